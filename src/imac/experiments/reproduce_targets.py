"""What the main job studies (cores, precisions, CPU energy models, networks) and the published
numbers it compares with, in one place that the run (:mod:`.reproduce`) and its report
(:mod:`.reproduce_report`) both read: neither imports the other at module level."""

from __future__ import annotations

CORES = ("cortex-a53", "cortex-a76")
PRECISIONS = ("fp32", "int8")
ENERGY_MODELS = ("bottom-up", "top-down")
MAIN_CORE, MAIN_PRECISION, MAIN_ENERGY = "cortex-a76", "fp32", "bottom-up"
TRAINED_CNNS = ("lenet-mnist", "vgg11-cifar10")
FULL_WIDTH = ("vgg11-full-cifar10", "vgg13-full-cifar10", "vgg16-full-cifar10")

PUBLISHED = {
    "saving_lenet": ("CPU-IMAC energy saving, LeNet / MNIST", "6.5 %", "seed paper abstract"),
    "saving_vgg": ("CPU-IMAC energy saving, VGG / CIFAR-10", "10 %", "seed paper abstract"),
    "mlp_vs_mixed": ("IMAC MLP vs mixed-signal IMC, latency", ">= 100x faster", "predecessor abstract"),
    "mlp_vs_gpu": ("IMAC MLP vs GPU, latency", ">= 10,000x faster", "predecessor abstract"),
    "analog_vs_mixed": ("fully analog vs mixed-signal (power / latency / energy)",
                        "1.1x / 12x / 13.3x lower", "sigmoid-neuron paper abstract"),
    "lenet_float": ("LeNet float accuracy", "99.12 %", "authors' code"),
    "imac_partitioned": ("400-120-84-10 binary MLP on IMAC with partitioning", "94.84 % (software ~97 %)",
                         "partitioning paper"),
    "subarrays": ("subarray count, 400-120-84-10 on 32x32", "67 (hpar 13,4,3; vpar 4,3,1)", "authors' code"),
}
