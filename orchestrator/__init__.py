"""orchestrator: a YAML manifest of video prompts in, verified MP4s out, through Krea's API.

Crash-safe (stop it any time; run it again), pays once per clip, and accounts for every dollar.
The command line is ``orchestrator --help``; from Python see :mod:`orchestrator.api`.
"""

from orchestrator.api import ajobs, areport, arun, jobs, report, run
from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.manifest.manifest import Manifest, load_manifest
from orchestrator.money.costs import estimate
from orchestrator.runner import RunSummary

__version__ = "0.1.0"
__all__ = [
    "Manifest",
    "OrchestratorError",
    "RunSummary",
    "Settings",
    "ajobs",
    "areport",
    "arun",
    "estimate",
    "jobs",
    "load_manifest",
    "report",
    "run",
]
