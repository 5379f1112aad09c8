"""Operating points: where the decision sits on the model's stored operating curve, and how to ask for one.

A request is written the way quality engineers say it:

    recall=0.95        catch at least 95 % of defects
    false-alarms=0.01  flag at most 1 % of defect-free parts
    cost=20            one missed defect costs as much as 20 false alarms: the least expected cost
    threshold=0.35     a decision threshold as it is

The curve maps every threshold to the expected defect recall and false-alarm rate on data like the
validation split it was measured on, each with a 95 % interval and the number of images it rests
on (training/operating_curve.py fits it). It is saved in the model folder, so the Space, the
handler and `evaluate` can move the decision along it without retraining.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

REQUEST_KINDS = ("recall", "false-alarms", "cost", "threshold")
REQUEST_HELP = "recall=R, false-alarms=F, cost=C (a miss costs C false alarms) or threshold=T"


@dataclass(frozen=True)
class Request:
    kind: str
    value: float

    @classmethod
    def parse(cls, text) -> "Request":
        """`recall=0.95` and the like; a bare number is a threshold."""
        if isinstance(text, Request):
            return text
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            kind, value = "threshold", str(text)
        else:
            kind, sep, value = str(text).strip().partition("=")
            if not sep:
                kind, value = "threshold", kind
            kind = kind.strip().lower().replace("_", "-")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if kind not in REQUEST_KINDS or not math.isfinite(number):
            raise ValueError(f"operating point {text!r} is not one of {REQUEST_HELP}")
        if kind == "cost" and number <= 0:
            raise ValueError(f"operating point {text!r}: a cost must be above 0")
        if kind != "cost" and not 0.0 <= number <= 1.0:
            raise ValueError(f"operating point {text!r}: {kind} must be from 0 to 1")
        return cls(kind, number)

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"


@dataclass(frozen=True)
class Point:
    """One threshold and what it is expected to do, with 95 % intervals."""

    threshold: float
    recall: float
    recall_interval: tuple[float, float]
    false_alarm_rate: float
    false_alarm_interval: tuple[float, float]

    def describe(self) -> str:
        (r0, r1), (f0, f1) = self.recall_interval, self.false_alarm_interval
        return (
            f"threshold {self.threshold:.4f}: expected defect recall {self.recall:.3f} (95 % interval {r0:.3f}-{r1:.3f}), "
            f"false alarms {100 * self.false_alarm_rate:.1f} % ({100 * f0:.1f}-{100 * f1:.1f} %)"
        )


@dataclass(frozen=True)
class OperatingCurve:
    """Expected recall and false-alarm rate for ascending thresholds, with 95 % intervals."""

    thresholds: tuple[float, ...]
    recall: tuple[float, ...]
    recall_low: tuple[float, ...]
    recall_high: tuple[float, ...]
    false_alarms: tuple[float, ...]
    false_alarms_low: tuple[float, ...]
    false_alarms_high: tuple[float, ...]
    n_defects: int
    n_good: int
    source: str = "validation split"

    @classmethod
    def from_dict(cls, values: dict, where: str = "operating curve") -> "OperatingCurve":
        columns = ("thresholds", "recall", "recall_low", "recall_high", "false_alarms", "false_alarms_low", "false_alarms_high")
        try:
            arrays = {c: np.asarray(values[c], dtype=np.float64) for c in columns}
            counts = {c: values[c] for c in ("n_defects", "n_good")}
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where} is incomplete or not numeric ({type(err).__name__}: {err})") from None
        n = len(arrays["thresholds"])
        if n < 2 or any(a.shape != (n,) or not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1 for a in arrays.values()):
            raise ValueError(f"{where} must hold equally long lists of at least 2 numbers from 0 to 1")
        if np.any(np.diff(arrays["thresholds"]) <= 0):
            raise ValueError(f"{where}: thresholds must ascend")
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in counts.values()):
            raise ValueError(f"{where}: n_defects and n_good must be positive whole numbers")
        return cls(**{c: tuple(map(float, a)) for c, a in arrays.items()}, **counts, source=str(values.get("source", "validation split")))

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def at(self, threshold: float) -> Point:
        """What `threshold` is expected to do (interpolated between the curve's thresholds)."""
        t = np.asarray(self.thresholds)

        def value(column):
            return float(np.interp(threshold, t, np.asarray(getattr(self, column))))

        return Point(
            float(threshold), value("recall"), (value("recall_low"), value("recall_high")),
            value("false_alarms"), (value("false_alarms_low"), value("false_alarms_high")),
        )

    def choose(self, request) -> Point:
        """The point a request asks for: the highest threshold reaching a recall, the lowest
        keeping false alarms under a rate, or the one of least expected cost, with the classes
        weighted by their shares on the data the curve was measured on."""
        request = Request.parse(request)
        t = np.asarray(self.thresholds)
        recall, alarms = np.asarray(self.recall), np.asarray(self.false_alarms)
        if request.kind == "threshold":
            return self.at(request.value)
        if request.kind == "recall":
            ok = np.flatnonzero(recall >= request.value)
            return self.at(t[ok[-1]] if len(ok) else t[0])
        if request.kind == "false-alarms":
            ok = np.flatnonzero(alarms <= request.value)
            return self.at(t[ok[0]] if len(ok) else t[-1])
        share = self.n_defects / (self.n_defects + self.n_good)
        cost = request.value * share * (1.0 - recall) + (1.0 - share) * alarms
        best = np.flatnonzero(cost <= cost.min() + 1e-12)
        return self.at(t[best[len(best) // 2]])  # the middle of a flat minimum: margin on both sides
