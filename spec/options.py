"""Variant options and spec profiles: which documented choices an optimizer makes, and the named sets of them.

An *option* is a hyperparameter of a clause (``spec/clauses.py``) whose default is the seed's (nanochat, October
2025) and whose other values are what real implementations compute on purpose: ``normalisation="clamp"``
(torch.optim.Muon), ``lr_scale="match_rms_adamw"``, ``weight_decay_mode="cautious"``, … . The suite never passes
an option through the target protocol: a *profile* says what the target computes, and the live reference and
the judges compute the same. A *profile* is a frozen set of option values with its source (project, file,
version). ``nanochat-2025-10`` is every default (today's SPEC and goldens).

Which clause an option belongs to is read from the registry: an option applies to every protocol clause whose
hyperparameters name it (``ns_eps`` is S6.2's ``eps``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .clauses import CLAUSES, OPTION_NAMES, Clause

__all__ = ["OPTION_CLAUSES", "Profile", "PROFILES", "DEFAULT_PROFILE", "options", "option_defaults", "profile",
           "clause_options", "resolve", "parse_option", "describe"]

#: The protocol clauses that take variant options, and their option names (their hyperparameters that the
#: protocol does not pass).
OPTION_CLAUSES: dict[str, tuple[str, ...]] = {
    c.id: names for c in CLAUSES if c.protocol
    for names in [tuple(h.name for h in c.hyper if h.name in OPTION_NAMES and h.name not in c.protocol_keywords)]
    if names}
#: S6.2 calls the Newton–Schulz eps ``eps``; the optimizers call it ``ns_eps`` (AdamW's ``eps`` is a protocol hyper)
_ALIASES = {"S6.2": {"ns_eps": "eps"}}


def _clause(cid: str) -> Clause:
    return next(c for c in CLAUSES if c.id == cid)


def options() -> dict[str, Any]:
    """Every option name -> its domain's owner hyper (the first clause that declares it)."""
    out: dict[str, Any] = {}
    for cid, names in OPTION_CLAUSES.items():
        for n in names:
            out.setdefault(n, _clause(cid).hyper[n])
    return out


def option_defaults() -> dict[str, Any]:
    """Every option at its default (profile ``nanochat-2025-10``)."""
    return {n: h.default for n, h in options().items()}


@dataclass(frozen=True)
class Profile:
    """A named, frozen set of option values (those that differ from the defaults) and where they come from."""

    name: str
    title: str
    source: str  # project, file, version: where the values were read
    differs: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""  # what the profile does not capture

    def __post_init__(self) -> None:
        known = options()
        for k, v in self.differs.items():
            if k not in known:
                raise ValueError(f"profile {self.name}: {k!r} is not an option; options: {sorted(known)}")
            known[k].check(v)
        object.__setattr__(self, "differs", MappingProxyType(dict(self.differs)))

    @property
    def values(self) -> dict[str, Any]:
        """Every option's value under this profile."""
        return {**option_defaults(), **self.differs}


DEFAULT_PROFILE = "nanochat-2025-10"

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("nanochat-2025-10", "the seed: nanochat's Muon, DistMuon, AdamW, DistAdamW of October 2025",
            "karpathy/nanochat nanochat/muon.py, nanochat/adamw.py (October 2025; ../shared/seeds/)"),
    Profile("torch-optim", "torch.optim.Muon and torch.optim.AdamW at torch 2.13's defaults",
            "pytorch/pytorch torch/optim/_muon.py, torch/optim/adamw.py (torch 2.13.0)",
            {"normalisation": "clamp", "weight_decay": 0.1, "weight_decay_lr": "base", "param_muls": "ignore",
             "clip_rule": "torch"},
            "torch.optim.Muon takes 2-D parameters only; its AdamW knows no p.lr_mul / p.wd_mul; clipping is "
            "torch.nn.utils.clip_grad_norm_"),
    Profile("keller", "KellerJordan's Muon (PyPI muon-optimizer 0.1.0), single-device SingleDeviceMuon",
            "KellerJordan/Muon muon.py (muon-optimizer 0.1.0)",
            {"weight_decay": 0.0},
            "equal to the seed on 2-D and 3-D parameters at its default weight_decay 0; it flattens 4-D filters to "
            "(out, −1) and scales by their kh/kw, which no protocol case exercises"),
    Profile("moonlight", "Moonlight's Muon (sum momentum, 0.2·sqrt(max(A, B)) scale, decay 0.1) and its AdamW",
            "MoonshotAI/Moonlight examples/toy_train.py (2025)",
            {"momentum_form": "sum", "lr_scale": "match_rms_adamw", "weight_decay": 0.1, "eps_placement": "before"}),
    Profile("nanochat-2026", "nanochat master's MuonAdamW: Polar Express, MuonEq, Muon+, NorMuon, cautious decay",
            "karpathy/nanochat nanochat/optim.py (commit 92d63d4, July 2026; same kernel read at 0e4b3fa)",
            {"rows": "polar_express", "row_cut": "truncate", "ns_eps": 1e-6, "safety": 1.01, "muoneq": True,
             "muon_plus": True, "normuon_beta2": 0.9, "weight_decay": 0.28, "weight_decay_lr": "adjusted",
             "weight_decay_mode": "cautious", "param_muls": "ignore"},
            "weight_decay is a schedule there (0.28·sqrt(B/B_ref)·D_ref/D, cosine to 0); the profile fixes its base "
            "0.28. NorMuon reduces over columns for wide matrices (rows < cols) as there"),
    Profile("optax", "optax.contrib.muon and optax.adamw defaults, in torch's (out, in) weight layout",
            "google-deepmind/optax optax/contrib/_muon.py, optax/_src/alias.py (optax 0.2.x)",
            {"momentum_form": "bias_corrected", "ns_eps": 1e-8, "param_muls": "ignore"},
            "optax scales by sqrt(max(1, fan_out/fan_in)) of its (in, out) kernels: sqrt(max(1, rows/cols)) here"),
)}


def profile(name: str) -> Profile:
    """The profile ``name``; ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}; got {name!r}") from None


def clause_options(clause_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``values`` (option -> value) give the reference function of ``clause_id``: its own
    options, under its own names (S6.2's ``eps`` for ``ns_eps``); {} for a clause without options."""
    alias = _ALIASES.get(clause_id, {})
    return {alias.get(n, n): values[n] for n in _names(clause_id) if n in values}


def _names(clause_id: str) -> tuple[str, ...]:
    names = OPTION_CLAUSES.get(clause_id, ())
    return (*names, *(k for k in _ALIASES.get(clause_id, {}) if k not in names))


def parse_option(text: str) -> tuple[str, Any]:
    """``"name=value"`` (value a Python literal, or a bare word for a string) -> (name, checked value)."""
    import ast

    name, eq, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    known = options()
    if not eq or name not in known:
        raise ValueError(f"--option must look like name=value with name one of {', '.join(sorted(known))}; "
                         f"got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return name, known[name].check(value)


def resolve(profile_name: str = DEFAULT_PROFILE, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every option's value: the profile's, then ``overrides`` (each checked against its domain)."""
    values = profile(profile_name).values
    known = options()
    for k, v in (overrides or {}).items():
        if k not in known:
            raise ValueError(f"{k} is not an option; options: {', '.join(sorted(known))}")
        values[k] = known[k].check(v)
    return values


def describe(values: Mapping[str, Any], names: tuple[str, ...] | None = None) -> tuple[str, dict[str, Any]]:
    """(the nearest profile, the options where ``values`` differ from it), counting only ``names`` (default:
    every option). Nearest = fewest differing options; ties go to the profile listed first."""
    names = names or tuple(options())
    best: tuple[int, str, dict[str, Any]] | None = None
    for p in PROFILES.values():
        pv = p.values
        diff = {n: values[n] for n in names if n in values and values[n] != pv[n]}
        if best is None or len(diff) < best[0]:
            best = (len(diff), p.name, diff)
    assert best is not None
    return best[1], best[2]
