"""tinyprop's layers: one class each, backward written under forward."""
from tinyprop.layers.activations import Cube, Dropout, ReLU, Sigmoid, Tanh
from tinyprop.layers.active_linear import ActiveLinear
from tinyprop.layers.base import Layer
from tinyprop.layers.conv import Conv2d, MaxPool2d, Reshape
from tinyprop.layers.embedding import Embedding, Embeddings
from tinyprop.layers.linear import SELECTIONS, Linear
from tinyprop.layers.lstm import LSTM, BiLSTM
from tinyprop.layers.loss import SoftmaxCrossEntropy
from tinyprop.layers.sequential import Sequential

__all__ = ["ActiveLinear", "BiLSTM", "Conv2d", "Cube", "Dropout", "Embedding", "Embeddings", "Layer", "Linear", "LSTM",
           "MaxPool2d", "ReLU", "Reshape", "SELECTIONS", "Sequential", "Sigmoid", "SoftmaxCrossEntropy", "Tanh"]
