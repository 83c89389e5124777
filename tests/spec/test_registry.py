"""The spec registry is the single source of truth: the reference and the implementation take their defaults
from it, its hyperparameter domains reject bad values naming the parameter, its protocol signatures judge
targets, its regimes classify inputs, and its capability declarations are validated."""

from __future__ import annotations

import importlib
import inspect
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest

from optconform import spec
from optconform.spec import docs
from optconform.spec.capabilities import Capabilities, CapabilityError, Unsupported
from optconform.spec.hyper import REQUIRED, Domain
from optconform.spec.levels import CORE, HARDENING, LAYOUT, parse_levels

CLAUSE_IDS = [c.id for c in spec.CLAUSES]
KEYWORDS = {name: e.clause.protocol_keywords for name, e in spec.PROTOCOL.items()}


def _reference(c: spec.Clause, function: str | None = None):
    return getattr(importlib.import_module(f"optconform.reference.{c.module}"), function or c.name)


@pytest.mark.parametrize("clause_id", CLAUSE_IDS)
def test_every_heading_function_exists_in_the_reference(clause_id):
    c = spec.clause(clause_id)
    assert c.name in c.functions
    for f in c.functions:
        assert callable(_reference(c, f)), f"{clause_id}: optconform.reference.{c.module}.{f} is missing"


@pytest.mark.parametrize("clause_id", CLAUSE_IDS)
def test_reference_signature_takes_its_defaults_from_the_registry(clause_id):
    """Every registry hyperparameter is a parameter of the reference function, with the registry's default
    (or none where the registry says REQUIRED): no default is written a second time."""
    c = spec.clause(clause_id)
    params = inspect.signature(_reference(c)).parameters
    for h in c.hyper:
        assert h.name in params, f"{clause_id}: {h.name} is not a parameter of {c.reference}"
        default = params[h.name].default
        if h.required:
            assert default is inspect.Parameter.empty, f"{clause_id}: {h.name} has a default but the registry none"
        else:
            assert default == h.default, f"{clause_id}: {h.name} default {default!r} != registry {h.default!r}"


@pytest.mark.parametrize("name,cls", [("SGD", "sgd.SGD"), ("Muon", "muon.Muon"), ("AdamW", "adamw.AdamW"),
                                      ("DistMuon", "distributed.DistMuon"), ("DistAdamW", "distributed.DistAdamW")])
def test_implementation_defaults_are_the_registrys(name, cls):
    module, attr = cls.split(".")
    obj = getattr(importlib.import_module(f"optconform.impl.{module}"), attr)
    params = inspect.signature(obj).parameters
    for h in spec.PROTOCOL[name].clause.hyper:
        if h.name in params and not h.required:
            assert params[h.name].default == h.default, (name, h.name)


@pytest.mark.parametrize("name", list(spec.PROTOCOL))
def test_every_protocol_keyword_is_a_declared_hyperparameter(name):
    c = spec.PROTOCOL[name].clause
    assert set(c.protocol_keywords) <= set(c.hyper.names), (name, c.protocol_keywords, c.hyper.names)


def _invalid(domain: Domain):
    for bad in (math.nan, 1.5, -1, True, 3, "x", (1.0,), 7.0):
        if not domain.admits(bad):
            return bad
    raise AssertionError(f"no invalid value found for {domain.rule}")


@pytest.mark.parametrize("clause_id", CLAUSE_IDS)
def test_every_domain_rejects_with_a_message_naming_the_parameter(clause_id):
    """S1.3: the message starts with the parameter's name (an entry of a pair or list with name[i])."""
    for h in spec.clause(clause_id).hyper:
        bad = _invalid(h.domain)
        with pytest.raises(ValueError) as info:
            h.check(bad)
        assert str(info.value).startswith(h.name), (clause_id, h.name, str(info.value))
        if not h.required:
            assert h.check(h.default) == h.default or h.domain.admits(h.default)


def test_hyperset_check_normalises_applies_rules_and_names_unknown_parameters():
    h = spec.hyper("S3.5")
    assert h.check(lr=1, momentum=0.5, nesterov=True) == {"lr": 1.0, "momentum": 0.5, "nesterov": True}
    with pytest.raises(ValueError, match=r"^nesterov requires momentum > 0"):
        h.check(lr=0.1, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match=r"^dampening is not a hyperparameter here"):
        h.check(lr=0.1, dampening=0.5)
    with pytest.raises(KeyError, match="no default"):
        h.default("lr")
    assert h["lr"].default is REQUIRED and h.defaults() == {"momentum": 0.0, "nesterov": False}
    with pytest.raises(ValueError, match=r"^it must be <= num_iterations \(10\)"):
        spec.hyper("S4.5").check(num_iterations=10, it=11)
    with pytest.raises(ValueError, match=r"^betas\[1\] must be in \[0, 1\)"):
        spec.hyper("S8.2").check(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"^lr_muls\[1\] must be finite and >= 0"):
        spec.hyper("S9.5").check(lr_muls=[1.0, -2.0])


def test_the_seeds_facts_are_written_once():
    assert spec.NS_COEFFICIENTS == spec.hyper("S6.2").default("coefficients") == (3.4445, -4.7750, 2.0315)
    from optconform.impl import newton_schulz
    from optconform.reference import orthogonalize
    assert newton_schulz.NS_COEFFICIENTS is spec.NS_COEFFICIENTS is orthogonalize.NS_COEFFICIENTS
    assert newton_schulz.NS_EPS == spec.hyper("S6.2").default("eps")


# ------------------------------------------------------------------------------------------ protocol


def test_signature_mismatch_names_what_does_not_fit():
    entry = spec.PROTOCOL["Muon"]

    def good(params, *, lr, momentum, nesterov, ns_steps):
        pass

    def flexible(params, **kwargs):
        pass

    def missing(params, *, lr, momentum):
        pass

    def extra(params, foo, *, lr, momentum, nesterov, ns_steps):
        pass

    class Opt:
        def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5):
            pass

    assert entry.mismatch(good) is None and entry.mismatch(flexible) is None and entry.mismatch(Opt) is None
    msg = entry.mismatch(missing)
    assert msg and "nesterov" in msg and msg.startswith("Muon(") and "cannot be called as" in msg
    assert "foo" in entry.mismatch(extra)
    assert "not callable" in entry.mismatch(42)
    assert spec.PROTOCOL["zeropower"].mismatch(lambda G: G) is not None
    assert spec.PROTOCOL["clip_grad_norm"].mismatch(max) is None  # a builtin without a signature: cannot tell


def test_protocol_is_in_clause_order_and_renders_typed_calls():
    ids = [e.clause.id for e in spec.PROTOCOL.values()]
    assert ids == sorted(ids, key=lambda i: tuple(int(x) for x in i[1:].split(".")))
    assert spec.PROTOCOL["zeropower"].render() == "zeropower(G: Tensor, steps: int) -> Tensor"
    assert spec.PROTOCOL["Muon"].render(types=False) == "Muon(params, *, lr, momentum, nesterov, ns_steps) -> Optimizer"


# ------------------------------------------------------------------------------------------ regimes


def test_regimes_classify_by_the_governing_norm():
    clip, zp, adamw, dm = spec.clause("S5.1"), spec.clause("S6.2"), spec.clause("S8.2"), spec.clause("S9.4")
    assert clip.regime(1e-160).level == HARDENING and clip.regime(1e-160).name == "norm_underflow"
    assert clip.regime([1.0, 1e30]).name == "norm_overflow"
    assert clip.regime([0.0, 1e-8, 1e12]).level == CORE
    assert zp.regime(1e-30).level == CORE  # the eps dominates: no underflow regime
    assert zp.regime(1e16).name == "norm_overflow" and zp.regime(1e15).level == CORE
    assert adamw.regime(1e30).level == CORE and adamw.levels == (CORE,)
    assert dm.levels == (CORE, HARDENING, LAYOUT) and spec.clause("S9.5").levels == (CORE, HARDENING, LAYOUT)
    da = spec.clause("S9.5")
    assert da.regime().level == CORE and da.regime(structural=("uneven_rows",)).level == HARDENING
    with pytest.raises(KeyError, match="no regime"):
        da.regime(structural=("ragged",))


def test_parse_levels():
    assert parse_levels("core") == (CORE,)
    assert parse_levels("layout, core") == (CORE, LAYOUT)
    assert parse_levels("all") == (CORE, HARDENING, LAYOUT)
    for bad in ("", "strict", "core,fast"):
        with pytest.raises(ValueError, match="^--require"):
            parse_levels(bad)


# ------------------------------------------------------------------------------------------ capabilities


def test_capabilities_from_a_plain_dict_and_their_reasons():
    obj = SimpleNamespace(optconform_capabilities={
        "unsupported": {"DistMuon": "no distributed Muon", "Muon.nesterov=False": "always Nesterov",
                        "AdamW.betas=(0.9, 0.999)": "nanochat betas only"},
        "world_sizes": [1, 2], "dtypes": ["float32"]})
    caps = Capabilities.declared_by(obj, KEYWORDS)
    assert caps.name_reason("DistMuon") == "no distributed Muon" and caps.name_reason("Muon") is None
    assert "always Nesterov" in caps.value_reason("Muon", {"nesterov": False, "lr": 0.02})
    assert caps.value_reason("Muon", {"nesterov": True}) is None
    assert caps.value_reason("AdamW", {"betas": [0.9, 0.999]}) is not None  # lists and tuples match
    assert caps.world_size_reason(3) and caps.world_size_reason(2) is None
    assert caps.dtype_reason("float64") and caps.dtype_reason("float32") is None
    assert Capabilities.declared_by(SimpleNamespace(), KEYWORDS) == Capabilities()
    same = Capabilities.declared_by(SimpleNamespace(optconform_capabilities=caps), KEYWORDS)
    assert same.value_reason("Muon", {"nesterov": False})


def test_false_and_zero_are_different_values():
    caps = Capabilities.declared_by(SimpleNamespace(optconform_capabilities={
        "unsupported": {"SGD.nesterov=False": "x"}}), KEYWORDS)
    assert caps.value_reason("SGD", {"nesterov": 0}) is None and caps.value_reason("SGD", {"nesterov": False})


@pytest.mark.parametrize("raw,match", [
    ({"unsupported": {"Adam": "x"}}, "not a protocol name"),
    ({"unsupported": {"Muon.dampening=0": "x"}}, "must look like 'Muon.<hyper>=<value>'"),
    ({"unsupported": {"Muon.nesterov": "x"}}, "must look like"),
    ({"unsupported": {"Muon.nesterov=maybe": "x"}}, "Python literal"),
    ({"unsupported": {"Muon": ""}}, "non-empty reasons"),
    ({"world_sizes": [0]}, "world_sizes"),
    ({"dtypes": ["bfloat16"]}, "dtypes"),
    ({"speed": "fast"}, "unknown keys"),
    ("everything", "must be a dict"),
])
def test_malformed_declarations_name_the_offending_key(raw, match):
    with pytest.raises(CapabilityError, match=match):
        Capabilities.declared_by(SimpleNamespace(optconform_capabilities=raw), KEYWORDS)


def test_unsupported_is_an_exception_a_target_can_raise_without_torch():
    assert issubclass(Unsupported, Exception) and not issubclass(Unsupported, (AssertionError, ValueError))


# ------------------------------------------------------------------------------------------ packaging


def test_the_registry_imports_neither_torch_nor_numpy():
    code = ("import sys, optconform.spec, optconform.spec.docs; "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_docs_check_reports_a_stale_block(tmp_path, capsys):
    f = tmp_path / "X.md"
    f.write_text("intro\n<!-- generated: protocol -->\nold\n<!-- end generated: protocol -->\n", encoding="utf-8")
    assert docs.main(["--check", str(f)]) == 1 and "stale generated block" in capsys.readouterr().out
    assert docs.main(["--write", str(f)]) == 0 and docs.main(["--check", str(f)]) == 0
    assert "Muon(params: Iterable[Tensor]" in f.read_text(encoding="utf-8")
