"""Optimizers with sparse row updates: SGD, AdaGrad, Adam."""
from tinyprop.optim.adagrad import AdaGrad
from tinyprop.optim.adam import Adam
from tinyprop.optim.optimizer import Optimizer
from tinyprop.optim.sgd import SGD

__all__ = ["AdaGrad", "Adam", "Optimizer", "SGD"]
