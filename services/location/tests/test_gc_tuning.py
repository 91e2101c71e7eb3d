"""The location process's garbage collector tuning (main._tune_gc; measured in its docstring)."""

import gc

import pytest

from fleet_location.config import Settings
from fleet_location.main import _tune_gc


@pytest.fixture
def default_gc():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("default_gc")
def test_young_objects_are_collected_less_often_and_start_up_is_never_scanned():
    start_up_objects = len(gc.get_objects())
    _tune_gc(Settings.model_construct(gc_gen0_threshold=50_000))
    assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_freeze_count() >= start_up_objects // 2


@pytest.mark.usefixtures("default_gc")
def test_a_threshold_of_zero_keeps_pythons_own():
    _tune_gc(Settings.model_construct(gc_gen0_threshold=0))
    assert gc.get_threshold() == (700, 10, 10)
