"""The error taxonomy of `puffer-cluster simkube run`: each error carries the command's exit
status (`puffer_cluster.simkube` lists them)."""
from __future__ import annotations

from puffer_cluster.traces import TraceError


class SimkubeRunError(Exception):
    """A `simkube run` that cannot go on; `exit_code` is the command's exit status."""

    exit_code = 11


class KubeconfigError(SimkubeRunError):
    """No usable kubeconfig: an explicit file that is missing, malformed, an unknown context."""

    exit_code = 3


class PreflightError(SimkubeRunError):
    """A preflight check failed; nothing was written to the cluster."""


class ApiUnreachableError(PreflightError):
    """The API server does not answer (or refuses the credentials)."""

    exit_code = 4


class CrdMissingError(PreflightError):
    """SimKube's Simulation CRD is not installed (or does not serve simkube.io/v1)."""

    exit_code = 5


class CrdMismatchError(CrdMissingError):
    """The installed CRD is not the one this command writes for (scope, required fields)."""


class NamespaceNotCleanError(PreflightError):
    """Something of an earlier simulation is still there."""

    exit_code = 6


class LeftoverSimulationError(NamespaceNotCleanError):
    """A Simulation object exists already."""

    exit_code = 6


class LeftoverPodsError(NamespaceNotCleanError):
    """A virtual namespace of the trace still holds pods."""

    exit_code = 7


class MetricsNamespaceMissingError(PreflightError):
    """The 'monitoring' namespace SimKube's controller requires does not exist."""

    exit_code = 8


class SimulationFailedError(SimkubeRunError):
    """The Simulation reached the state Failed."""

    exit_code = 9


class SimulationTimeoutError(SimkubeRunError):
    """The Simulation did not reach Finished or Failed in time."""

    exit_code = 10


class KubeApiError(SimkubeRunError):
    """The API refused or dropped a request during the run."""

    exit_code = 11


class PodsNotObservedError(SimkubeRunError):
    """The agent loop saw no pod of its Deployment while the Simulation ran."""

    exit_code = 12


class TraceNotReplayableError(TraceError):
    """A well-formed trace that SimKube's driver cannot replay (JSON, no events, ...)."""

