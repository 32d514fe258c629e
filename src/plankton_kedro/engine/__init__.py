"""The plain library under the pipelines: no Kedro, testable alone, usable from a script.

Laid out by the way data flows, each sub-package with one dependency family:

- :mod:`.collection` (no torch): raw files -> records -> uint8 cache;
- :mod:`.modelling` (torch): cache -> trained networks -> outputs;
- :mod:`.analysis` (numpy, scikit-learn, matplotlib): outputs -> metrics, reports, ensembles;

and the contracts all of them share: :mod:`.config` (validated parameters),
:mod:`.checkpoint` (the typed checkpoint), :mod:`.errors` (user-facing errors) and
:mod:`.atomic` (publishing files whole).
"""
