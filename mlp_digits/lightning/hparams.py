"""The run's hyperparameters in TensorBoard's HPARAMS tab, next to its final metrics."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.utils.tensorboard.summary import hparams as hparams_summary

# The hyperparameters a learner compares runs by: ticked in the HPARAMS tab by default.
COMPARED_HPARAMS = ("lr", "sizes", "init", "seed", "batch_size")
METRIC_TAGS = ["val/accuracy", "val/cost", "test/accuracy", "test/cost"]


def mark_compared(experiment: Any) -> None:
    """Mark ``COMPARED_HPARAMS`` as differing between runs in the experiment summary.

    TensorBoard lists a run's hyperparameters by name, those that differ first, and ticks
    the first five: alphabetically that was backprop, batch_size, check_gradients_every,
    data_dir and download. "Differs" puts the ones a learner compares first, and ticked.
    """
    value = experiment.value[0]
    data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in COMPARED_HPARAMS
    value.metadata.plugin_data.content = data.SerializeToString()


@rank_zero_only
def write_hparams(
    logger: TensorBoardLogger, hparams: dict[str, Any], metric_tags: list[str] = METRIC_TAGS
) -> None:
    """Put the run's hyperparameters in TensorBoard's HPARAMS tab, next to its final metrics,
    and in ``hparams.yaml``.

    Written when the run starts: TensorBoard reads each metric's value from the run's
    scalars of that tag, so nothing is logged twice (and there is no placeholder
    ``hp_metric``). Lightning's ``log_hyperparams`` would log the metrics once more at step 0.
    """
    logger.hparams.update(hparams)  # hparams.yaml: written by the logger's save()
    params = {
        k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in hparams.items()
    }
    summaries = hparams_summary(params, dict.fromkeys(metric_tags, 0.0))
    mark_compared(summaries[0])
    for summary in summaries:
        logger.experiment.file_writer.add_summary(summary)
    logger.experiment.flush()
