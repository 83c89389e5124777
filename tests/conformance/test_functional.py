"""The functional target protocol (``optconform.conformance.functional``): a functional target is wrapped into the
torch protocol by ``load_target`` and judged by the unchanged cases; capabilities carry over; a bad ``protocol``
value is refused; the optax adapter runs through the suite where JAX and optax are installed."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from suite_run import level, rows, run_suite

from optconform.conformance import functional
from optconform.conformance.stepping import Trajectory, step_through
from optconform.conformance.target import TargetError, load_target
from optconform.spec import Capabilities, CapabilityError
from optconform.spec.capabilities import PROTOCOLS

SELECT = (
    "muon_live or adamw_live or sgd_live or clip_grad_norm_small or zeropower_live_structured or step_decay"
    " or test_resume"  # the wrapper keeps the state in self.state, so it survives a state_dict round trip
)


# ------------------------------------------------------------------------------------------------ the wrapper


def test_the_docstring_block_is_the_generated_protocol():
    doc = functional.__doc__
    block = doc.split("<!-- generated: functional protocol -->\n```\n")[1].split("\n```")[0]
    assert block == functional.protocol_block()
    assert set(functional.FUNCTIONAL_NAMES) == set(functional.spec.PROTOCOL) - set(functional.TORCH_ONLY)


def test_a_functional_target_is_wrapped_and_its_capabilities_carry_over():
    t = load_target("functional_targets:reference_f32")
    assert t.functional is not None and t.capabilities.protocol == "functional"
    assert t.problem("Muon") is None and t.problem("zeropower") is None and t.problem("lr_multiplier") is None
    status, reason = t.problem("DistMuon")
    assert status == "not provided" and "torch-only" in reason
    assert isinstance(t.get("Muon")([torch.nn.Parameter(torch.zeros(2, 3))], lr=0.1, momentum=0.9, nesterov=True,
                                    ns_steps=5), torch.optim.Optimizer)


def test_group_hyperparameters_reach_the_update_each_step():
    seen = []

    def sgd_update(param, grad, state, *, lr, momentum, nesterov):
        seen.append((lr, momentum, nesterov, param.dtype, dict(state)))
        return param - lr * grad, {"momentum_buffer": grad, "step": np.asarray(len(seen))}

    target = functional.as_torch_target(SimpleNamespace(sgd_update=sgd_update, sgd_init=lambda p: {"step": 0}))
    traj = Trajectory("SGD", "t", params0=[np.ones((2, 2))], per_step=[{"lr": 0.5}, {"lr": 0.25}],
                      hyper=dict(lr=1.0, momentum=0.9, nesterov=False), grads=[[np.ones((2, 2))]] * 2)
    rep = step_through(target.SGD, traj, device=torch.device("cpu"), dtype=torch.float32)
    assert [s[:3] for s in seen] == [(0.5, 0.9, False), (0.25, 0.9, False)]
    assert seen[0][3] == np.float32 and seen[0][4] == {"step": 0}  # the init function's state before step 0
    assert set(seen[1][4]) == {"momentum_buffer", "step"} and seen[1][4]["momentum_buffer"].dtype == np.float32
    np.testing.assert_allclose(rep.after[-1][0], np.full((2, 2), 1 - 0.5 - 0.25))
    assert set(rep.state[0]) == {"momentum_buffer", "step"}


def test_functional_selectors_are_read_as_protocol_names():
    obj = SimpleNamespace(optconform_capabilities={
        "protocol": "functional", "options": ["muon_update"],
        "unsupported": {"muon_update.nesterov=False": "always Nesterov", "adamw_update": "no AdamW"}})
    caps = Capabilities.declared_by(obj, {n: e.clause.protocol_keywords for n, e in functional.spec.PROTOCOL.items()})
    assert caps.options == frozenset({"Muon"}) and caps.name_reason("AdamW") == "no AdamW"
    assert "always Nesterov" in caps.value_reason("Muon", {"nesterov": False})


@pytest.mark.parametrize("value", ["jax", "Functional", 1, True])
def test_a_bad_protocol_value_is_refused_with_a_clear_error(value):
    obj = SimpleNamespace(optconform_capabilities={"protocol": value})
    with pytest.raises(CapabilityError, match=r"\['protocol'\] must be one of 'torch', 'functional'"):
        Capabilities.declared_by(obj, {})
    assert PROTOCOLS == ("torch", "functional")


def test_load_target_refuses_a_bad_protocol_naming_the_key():
    with pytest.raises(TargetError, match=r"functional_targets:bad_protocol.*\['protocol'\].*got 'jax'"):
        load_target("functional_targets:bad_protocol")


def test_a_functional_signature_mismatch_quotes_the_functional_signature():
    status, reason = load_target("functional_targets:zeropower_without_steps").problem("zeropower")
    assert status == "signature mismatch" and "(functional protocol)" in reason and "zeropower(G, steps)" in reason


# ------------------------------------------------------------------------------------------------ through the suite


def test_the_reference_as_a_functional_target_passes_core(tmp_path):
    """The float64 reference behind the functional signatures, in float32 arrays: every selected clause passes at
    core through the wrapper, with the same cases and levels as a torch target; distributed: not provided."""
    rep = run_suite("functional_targets:reference_f32", tmp_path, select=SELECT + " or test_dist_muon")
    assert rep["returncode"] == 0, rep["output"]
    for clause in ("S3.5", "S4.2", "S5.1", "S6.2", "S7.2", "S8.2"):
        cell = level(rep, clause, "core")
        assert cell["cases"] > 0 and cell["failed"] == 0, (clause, cell)
    assert "not provided" in str(rows(rep)["S9.4"]), rows(rep)["S9.4"]


def test_a_functional_mistake_fails_its_clause(tmp_path):
    rep = run_suite("functional_targets:nesterov_ignored", tmp_path, select="muon_live and not large")
    cell = level(rep, "S7.2", "core")
    assert cell["failed"] > 0 and rep["returncode"] != 0, cell


# ------------------------------------------------------------------------------------------------ optax


def test_the_optax_adapter_runs_through_the_suite(tmp_path):
    pytest.importorskip("jax", reason="JAX is not installed in this environment (the optax adapter needs it)")
    pytest.importorskip("optax", reason="optax is not installed in this environment (the optax adapter needs it)")
    rep = run_suite("optconform.conformance.adapters.optax_adapter", tmp_path,
                    select="muon_live or adamw_live or sgd_live or clip_grad_norm_small or zeropower_live_structured"
                           " or test_resume")
    for clause in ("S3.5", "S5.1", "S6.2", "S7.2", "S8.2"):  # judged under its declared profile, optax
        cell = level(rep, clause, "core")
        assert cell["cases"] > 0 and cell["failed"] == 0, (clause, cell, rep["output"][-3000:])


def test_the_optax_adapter_declares_what_it_cannot_do():
    if importlib.util.find_spec("optax") is None or importlib.util.find_spec("jax") is None:
        pytest.skip("JAX / optax are not installed in this environment (the optax adapter needs them)")
    t = load_target("optconform.conformance.adapters.optax_adapter")
    assert t.capabilities.profile == "optax" and t.capabilities.dtypes == frozenset({"float32"})
    for name in ("lr_multiplier", "muon_momentum", "inverse_time_decay_lr"):
        status, reason = t.problem(name)
        assert status == "unsupported" and "optax has no" in reason, (name, reason)
    for name in ("DistMuon", "DistAdamW"):
        assert t.problem(name)[0] == "not provided", name
    for name in ("zeropower", "Muon", "AdamW", "SGD", "clip_grad_norm"):
        assert t.problem(name) is None, (name, t.problem(name))
