"""The metrics as prometheus_client metric families, from a collector of our own.

`RepositoryCollector` reads the repository at each collect(), the way exporters of
persisted data do: counters and histograms are CounterMetricFamily and
HistogramMetricFamily built from the events metrics.py derives (kept monotonic by
prometheus_tally.py), gauges are GaugeMetricFamily from the health `status` computes.
It is registered in a CollectorRegistry of its own, never prometheus_client's global
one, so no process metrics or other library's collectors slip in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cleancut import clock
from cleancut.repository.repository import Repository
from cleancut.settings.config_file import ConfigFile

from .metrics import COUNTERS, GAUGES, HISTOGRAMS, Labels, Sample, events, gauges
from .prometheus_tally import Totals, settle
from .status import status

CONTENT_TYPE = CONTENT_TYPE_LATEST


class RepositoryCollector(Collector):
    """Every cleancut metric of one repository, computed when collected."""

    def __init__(
        self, repo: Repository, config: ConfigFile, now: Callable[[], datetime] = clock.now
    ) -> None:
        self.repo = repo
        self.config = config
        self.now = now

    def collect(self) -> Iterator[Metric]:
        now = self.now()
        sources = status(self.repo, self.config, now, None, False).sources
        totals = settle(self.repo.local_dir, events(self.repo))
        yield from _counters(totals)
        yield from _histograms(totals)
        yield from _gauges(gauges(self.repo, sources, now))


def registry(repo: Repository, config: ConfigFile) -> CollectorRegistry:
    """A registry of our own holding the repository's collector."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RepositoryCollector(repo, config))
    return reg


def exposition(repo: Repository, config: ConfigFile) -> bytes:
    """The metrics in the Prometheus text format (what /metrics and the textfile hold)."""
    return generate_latest(registry(repo, config))


def _label_sets(totals: Totals, sample: str) -> list[Labels]:
    return sorted({labels for (name, labels) in totals if name == sample})


def _counters(totals: Totals) -> Iterator[Metric]:
    for name, help_text in COUNTERS.items():
        sets = _label_sets(totals, name + "_total")
        names = [k for k, _ in sets[0]] if sets else ["source"]
        family = CounterMetricFamily(name, help_text, labels=names)
        for labels in sets:
            family.add_metric([v for _, v in labels], totals[(name + "_total", labels)])
        yield family


def _histograms(totals: Totals) -> Iterator[Metric]:
    for name, (help_text, bounds) in HISTOGRAMS.items():
        sets = _label_sets(totals, name + "_count")
        names = [k for k, _ in sets[0]] if sets else ["source"]
        family = HistogramMetricFamily(name, help_text, labels=names)
        for labels in sets:
            buckets = []
            for bound in (*bounds, float("inf")):
                le = "+Inf" if bound == float("inf") else repr(bound)
                buckets.append((le, totals.get((name + "_bucket", (*labels, ("le", le))), 0.0)))
            family.add_metric(
                [v for _, v in labels], buckets, sum_value=totals[(name + "_sum", labels)]
            )
        yield family


def _gauges(samples: list[Sample]) -> Iterator[Metric]:
    for name, help_text in GAUGES.items():
        mine = [s for s in samples if s.metric == name]
        names = [k for k, _ in mine[0].labels] if mine else []
        family = GaugeMetricFamily(name, help_text, labels=names)
        for s in mine:
            family.add_metric([v for _, v in s.labels], s.value)
        yield family
