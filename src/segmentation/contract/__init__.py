"""The input contract: schema (declared or inferred), the checks, and the one streamed validator.

``schema`` (:class:`~segmentation.contract.schema.TableSchema`, CC GENERAL's pandera declaration) ·
``inference`` (a new table's schema) · ``interpret`` (the rules that read each column: ID, code, count,
ratio, coordinate, empty, constant, duplicate...) · ``notes`` (:class:`~segmentation.contract.notes.
ColumnNote`: how each column was read and why; the report's table) · ``values`` (how raw values are read) ·
``checks`` (row by row) · ``validator`` (:class:`~segmentation.contract.validator.ChunkValidator`, chunk by
chunk: training, scoring, drift, serving) · ``frame`` (pandera, a whole table in memory) · ``report`` (what
validation found).
"""
