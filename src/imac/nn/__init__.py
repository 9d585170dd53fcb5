"""Networks whose fully-connected layers run on IMAC: data, layers, models, training.

* :mod:`imac.nn.data`: MNIST / CIFAR-10 loaders (validation, look-up order, .npz cache);
* :mod:`imac.nn.layers`: ``BinaryLinear`` (BinaryConnect), ``ImacNeuron`` (the fitted SOT-MRAM
  neuron curve as an activation), ``sign_ste``;
* :mod:`imac.nn.models`: the registry (``mlp-mnist``, ``lenet-mnist``, ``vgg*-cifar10``);
* :mod:`imac.nn.quant`: int8 simulation of the CPU-side convolutions;
* :mod:`imac.nn.train` / :mod:`imac.nn.checkpoint`: training, evaluation, checkpoints;

Importing this package is free; torch loads with the submodules.
"""
