"""How a run uses the machine: the `tf.distribute` strategy and the compute precision.

`--distribute mirrored` copies the model onto every local GPU, or onto every logical CPU device
when there is no GPU (one CPU device unless the process split it: see tests/test_backbones.py);
`multiworker` reads the cluster from the TF_CONFIG environment variable, and without one runs as
a single worker.

`--precision auto` trains in mixed precision where the hardware computes it natively (float16 on
a GPU, bfloat16 on CPUs with AVX512-BF16 or AMX: ~1.4x faster steps here) and in float32
elsewhere, where emulated low precision would be slower. Saved models are always float32.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf


def make_strategy(kind: str) -> tf.distribute.Strategy:
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    raise ValueError(f"--distribute must be none, mirrored or multiworker, got {kind!r}")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo does not exist)."""
    cpuinfo = Path("/proc/cpuinfo")
    return set(cpuinfo.read_text().split()) if cpuinfo.is_file() else set()


def resolve_precision(kind: str) -> str:
    """The Keras dtype policy name for `--precision`."""
    if kind != "auto":
        return kind
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_flags() & {"avx512_bf16", "amx_bf16"} else "float32"


def compiled_call(model) -> tf.types.experimental.PolymorphicFunction:
    """The model on one batch, in inference mode, compiled once. A plain call, not
    `predict_on_batch`, which under a MirroredStrategy gives every replica the whole batch and
    returns it once per replica."""
    return tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
