"""The BioTorch protocol's pieces: the validation split holds out the last training images, the best epoch is the
first of the highest validation accuracy."""

import numpy as np
import pytest

from dynlearn import ConfigError
from dynlearn.data import Dataset
from dynlearn.figures.lenet_fashion import best_validation_epoch, split_validation, train_with_validation


def _data(n_train=10, n_test=4):
    x = np.arange(n_train, dtype=np.float32)[:, None]
    labels = np.arange(n_train) % 3
    return Dataset("toy", x, np.eye(3, dtype=np.float32)[labels], np.full((n_test, 1), -1.0, np.float32),
                   np.zeros((n_test, 3), np.float32), labels, np.zeros(n_test, int))


def test_the_last_training_images_become_the_validation_set_and_the_test_set_is_kept():
    fit, (x_test, y_test) = split_validation(_data(), 3)
    assert fit.x_train[:, 0].tolist() == list(range(7)) and fit.x_test[:, 0].tolist() == [7, 8, 9]
    assert fit.labels_test.tolist() == [1, 2, 0] and fit.y_test.argmax(1).tolist() == [1, 2, 0]
    assert fit.labels_train.shape == (7,) and np.all(x_test == -1.0) and y_test.shape == (4, 3)


@pytest.mark.parametrize("n", [2.5, True, "3"])
def test_a_validation_size_that_is_not_an_integer_is_named(n):
    with pytest.raises(ConfigError, match="n_validation must be an integer"):
        split_validation(_data(), n)


@pytest.mark.parametrize("n", [0, 10, 11, -1])
def test_a_validation_size_that_leaves_no_training_or_no_validation_image_is_named(n):
    with pytest.raises(ConfigError, match=f"n_validation must be in \\(0, 10\\), got {n}"):
        split_validation(_data(), n)


def test_the_best_epoch_is_the_first_of_the_highest_validation_accuracy():
    assert best_validation_epoch([0.5, 0.8, 0.7, 0.8]) == 1
    assert best_validation_epoch([0.9, 0.1]) == 0


@pytest.mark.parametrize("epochs", [0, -2, 1.5])
def test_a_run_of_no_epochs_is_named_before_any_work(epochs):
    with pytest.raises(ConfigError, match="epochs must be an integer >= 1"):
        train_with_validation("bp", _data(), n_validation=3, epochs=epochs)


def test_a_bad_validation_size_is_named_before_the_network_is_built():
    with pytest.raises(ConfigError, match="n_validation must be in"):
        train_with_validation("no-such-rule", _data(), n_validation=10, epochs=1)
