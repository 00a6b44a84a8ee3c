"""Batch scoring: a whole customer table through a model bundle, in chunks, restartable.

The table is split into chunks (Parquet: whole row groups, coalesced up to ``chunk_rows``; CSV: ranges of
rows). Each chunk is read, validated (:class:`segmentation.contract.validator.ChunkValidator`),
its valid rows scored, and written as a *part* (scored rows + rejects + a small JSON marker written last)
into a staging directory beside the output::

    <out dir>/.<out name>.parts-<key>/part-00000.parquet, part-00000.rejects.parquet, part-00000.json

``key`` is a digest of everything that decides the output: the bundle digest, the data's content hash,
the chunking and the model version written into the rows. A run that is interrupted (even by SIGKILL)
leaves only completed parts (each is renamed into place when complete) and no final output; rerunning the
same command resumes from those parts. :func:`combine` concatenates the parts in row order into the output
Parquet and the rejects Parquet (temporary file + rename each), writes the JSON summary last and removes
the staging directory. A rerun whose summary matches the key and whose files are present does nothing, so
reruns never duplicate rows; a forced rerun on the same machine and thread settings rewrites byte-identical
files (parts are combined in order).
After a successful combine, leftovers of interrupted runs for the same output (temporary files, staging
directories of other keys) are removed, so run one scoring per output path at a time.

Output columns: the schema's ID column (or ``row``, the 0-based row number in the file, when the model has
no ID column or the table lacks it), ``segment`` (int32, -1 noise), ``segment_name``, ``confidence``
(float32) and ``model_version`` (``name:vN`` for a registry model, else ``bundle:<digest12>``). Rejects:
``row``, ``id``, ``column``, ``check``, ``value`` (one line per failed check of a rejected row).

Modules: ``plan`` (the chunks, key and paths of a run: :func:`plan_scoring`) · ``read`` (one chunk's
columns and IDs) · ``assign`` (validate and score rows: :func:`score_columns`) · ``parts`` (one scored chunk
on disk, resumable: :func:`score_part`) · ``output`` (:func:`combine`, :func:`up_to_date`, the summary) ·
``run`` (:func:`score_table` in one process; :func:`cached_model` for workers). This package re-exports
their public names.

This package is pure library code (no Prefect): the ``score-customers`` flow in ``workflows/score.py`` and
``segment score`` both drive :func:`plan_scoring`, :func:`score_part` and :func:`combine`.
"""

from segmentation.scoring.assign import score_chunk, score_columns
from segmentation.scoring.output import ScoringSummary, combine, up_to_date
from segmentation.scoring.parts import PartResult, completed_part, score_part
from segmentation.scoring.plan import (
    Chunk,
    ScoringPlan,
    default_rejects_path,
    model_version_label,
    plan_chunks,
    plan_scoring,
    summary_path,
)
from segmentation.scoring.read import ChunkData, read_chunk
from segmentation.scoring.run import cached_model, score_table

__all__ = [
    "Chunk",
    "ChunkData",
    "PartResult",
    "ScoringPlan",
    "ScoringSummary",
    "cached_model",
    "combine",
    "completed_part",
    "default_rejects_path",
    "model_version_label",
    "plan_chunks",
    "plan_scoring",
    "read_chunk",
    "score_chunk",
    "score_columns",
    "score_part",
    "score_table",
    "summary_path",
    "up_to_date",
]
