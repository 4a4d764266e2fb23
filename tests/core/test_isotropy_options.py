"""The Epps-Pulley / SIGReg number options are checked by name at the boundary (a float
``num_points`` reached ``torch.linspace`` and failed with its signature dump, review 2026-12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rag_relax_plugins.core.isotropy import (
    epps_pulley,
    epps_pulley_null_mean,
    sample_slices,
    sigreg,
)


@pytest.mark.parametrize("bad", [17.0, True, 1, "17", None])
def test_num_points_must_be_an_int_of_at_least_two(bad):
    z = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="num_points must be an int >= 2"):
        epps_pulley(z, num_points=bad)
    with pytest.raises(ValueError, match="num_points must be an int >= 2"):
        epps_pulley_null_mean(num_points=bad)
    with pytest.raises(ValueError, match="num_points must be an int >= 2"):
        sigreg(torch.randn(8, 3), num_points=bad)


@pytest.mark.parametrize(("bad", "error"), [(0.0, ValueError), (float("inf"), ValueError), ("3", TypeError)])
def test_t_max_must_be_a_finite_positive_number(bad, error):
    with pytest.raises(error, match="t_max must be"):
        epps_pulley(torch.randn(8, 2), t_max=bad)
    with pytest.raises(error, match="t_max must be"):
        epps_pulley_null_mean(t_max=bad)


def test_numpy_scalars_give_the_same_statistic():
    z = torch.randn(16, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(epps_pulley(z, num_points=np.int64(9), t_max=np.float32(2.5)),
                               epps_pulley(z, num_points=9, t_max=2.5))
    assert epps_pulley_null_mean(num_points=np.int32(9)) == epps_pulley_null_mean(num_points=9)
    assert torch.equal(sample_slices(4, np.int64(5)), sample_slices(4, 5))
    with pytest.raises(ValueError, match="num_slices must be an int >= 1"):
        sample_slices(4, 5.0)
    with pytest.raises(ValueError, match="dim must be an int >= 1"):
        sample_slices(0, 5)
