"""The kpc suite as pytest tests: one per case x variant x flavor, generated
by kpc.pytest_plugin from the session that `./kpc run` built."""

from kpc.pytest_plugin import raise_outcome


def test_case(kpc_item, kpc_session):
    raise_outcome(kpc_session.verdict(kpc_item))
