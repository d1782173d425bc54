"""Every registered weighting passes the common checks of `weighting_case`: a
method is under test the day it is registered."""

import pytest
from weighting_case import run_weighting_test

import kmtl


def test_every_method_is_registered_under_its_standard_name():
    assert kmtl.weighting.list_weightings() == [
        "aligned_mtl", "cagrad", "db_mtl", "dwa", "fairgrad", "famo", "gls",
        "graddrop", "gradnorm", "gradvac", "imtl", "mgda", "nash_mtl", "pcgrad",
        "rlw", "static", "uncertainty", "upgrad"]
    assert type(kmtl.weighting.get("ew")) is type(kmtl.weighting.get("static"))
    assert type(kmtl.weighting.get("uw")) is type(kmtl.weighting.get("uncertainty"))


@pytest.mark.parametrize("name", kmtl.weighting.list_weightings())
def test_registered_weighting(name, tmp_path):
    run_weighting_test(name, tmp_path)
