"""The method registry: the field's other names resolve to their canonical methods everywhere."""

import numpy as np
import pytest
import torch

import ratiokit as rk
from ratiokit.methods import ALIASES, METHODS, get_method

CANONICAL = [
    "bregman", "classifier", "energy", "fdiv", "kliep", "kmm", "mmd", "mmd_deep", "mmd_opt",
    "mmd_rff", "mmdagg", "moments", "rulsif", "ulsif", "wasserstein",
]  # fmt: skip


def samples(seed, n=150):
    gen = np.random.default_rng(seed)
    return gen.normal(0.5, 1.0, size=(n, 2)), gen.normal(0.0, 1.0, size=(n, 2))


def test_aliases_are_looked_up_but_never_listed():
    assert sorted(METHODS) == CANONICAL and len(METHODS) == len(CANONICAL)
    assert set(ALIASES.values()) <= set(CANONICAL) and not set(ALIASES) & set(CANONICAL)
    for alias, name in ALIASES.items():
        assert alias in METHODS and METHODS[alias] is METHODS.get(alias) is METHODS[name]
        assert type(get_method(alias)) is METHODS[name]
    assert "lsif" not in METHODS and 3 not in METHODS and METHODS.get("lsif", 0) == 0
    with pytest.raises(KeyError):
        METHODS["lsif"]


def test_unknown_name_lists_the_canonical_names_only():
    message = f"`method` must be one of {CANONICAL} or a Discrepancy; got 'lsif'."
    with pytest.raises(ValueError) as info:
        get_method("lsif")  # uLSIF is not LSIF (which keeps a non-negativity constraint)
    assert str(info.value) == message


@pytest.mark.parametrize(("alias", "name"), sorted(ALIASES.items()))
def test_alias_gives_the_canonical_methods_test(alias, name):
    # The same int rng must give bit-identical results under either name.
    x, y = samples(0)
    a = rk.two_sample_test(x, y, method=alias, n_permutations=99, rng=1)
    b = rk.two_sample_test(x, y, method=name, n_permutations=99, rng=1)
    assert a.method == b.method == name
    assert (a.statistic, a.pvalue) == (b.statistic, b.pvalue)
    np.testing.assert_array_equal(a.null_distribution, b.null_distribution)


def test_c2st_gives_the_classifiers_ratio():
    x_p, x_q = samples(2)
    a = rk.estimate_ratio(x_p, x_q, method="c2st", rng=3)
    b = rk.estimate_ratio(x_p, x_q, method="classifier", rng=3)
    assert type(a.method_) is type(b.method_) is METHODS["classifier"]
    torch.testing.assert_close(a.log_ratio(torch.tensor(x_q)), b.log_ratio(torch.tensor(x_q)))


@pytest.mark.parametrize("name", CANONICAL)
def test_every_registered_class_is_public(name):
    # `rk.<Class>` is the registry's class itself, listed in `__all__` and in `dir(rk)`.
    cls = METHODS[name]
    assert getattr(rk, cls.__name__) is cls
    assert cls.__name__ in rk.__all__ and cls.__name__ in dir(rk)
