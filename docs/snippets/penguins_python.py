import keras
import kmtl
from kmtl.data import make_dataset, split_frame
from kmtl.features import resolve_features

keras.utils.set_random_seed(0)
frame = kmtl.datasets.load_penguins()
tasks = [
    kmtl.Task("species", "multiclass"),
    kmtl.Task("sex", "binary", positive="female"),       # 11 rows unlabelled: masked
    kmtl.Task("body_mass_g", "regression"),
]
train, val, test = split_frame(frame, tasks, "stratified", validation=0.15, test=0.15)
for task in tasks:
    task.fit(train)                                      # classes, target scale
features = resolve_features(train, numeric=["bill_length_mm", "bill_depth_mm",
                                            "flipper_length_mm"],
                            categorical=["island"])
for feature in features:
    feature.fit(train)                                   # mean/variance, vocabulary

model = kmtl.build_model(features, tasks, "mmoe", num_experts=3, expert_units=[32])
model.compile(optimizer=keras.optimizers.Adam(5e-3))
model.fit(make_dataset(train, features, tasks, 32, shuffle=True),
          validation_data=make_dataset(val, features, tasks, 64),
          epochs=100, verbose=0,
          callbacks=[keras.callbacks.EarlyStopping(patience=10,
                                                   restore_best_weights=True)])
metrics = model.evaluate(make_dataset(test, features, tasks, 64), return_dict=True,
                         verbose=0)
for name, value in metrics.items():
    print(f"{name:19} {value:.4f}")
model.save("penguins.keras")                             # loads without custom_objects
print(kmtl.export_saved_model(model, "saved_models/penguins"))  # -> .../1
