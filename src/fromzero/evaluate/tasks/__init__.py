"""lm-evaluation-harness tasks on the bundled corpora: three YAML files and the Python they call.

The YAMLs are read by lm_eval, not imported: point it at this folder (``lm_eval --include_path``,
or :func:`fromzero.evaluate.harness.task_manager`). ``corpora.py`` builds each task's documents
from the corpora inside the installed package, so the tasks need no download and no hub.
"""
