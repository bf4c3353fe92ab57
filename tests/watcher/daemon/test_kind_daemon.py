"""The running daemon and the real broker with models that are not torch: the loop of
`warden demo --model svc` and `--model lightgbm` (an incident on shifted traffic, a candidate
of the same kind validated by the gate with ONNX parity, the swap, the new version served by
`ActiveModel` as `warden serve` serves it, and better on shifted traffic)."""

import pytest

from watcher.demo.run import run_demo


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "model",
    [
        "svc",
        pytest.param(
            "lightgbm",
            marks=pytest.mark.xfail(
                strict=False,
                reason="issue 20, open: on ~700 recent rows the guard's regions are coarse, over "
                "half of the reference leaves the guard while recent rows reach 66 % of it, and "
                "the full-reference rule asks for a person instead of swapping",
            ),
        ),
    ],
)
def test_the_demo_loop_closes_with_a_non_torch_model(tmp_path, model):
    from rich.console import Console

    console = Console(record=True, width=120)
    code = run_demo(
        tmp_path / "demo", rate=400, normal_rows=2000, timeout_s=240, console=console, model=model
    )
    output = console.export_text()
    assert code == 0, output[-3000:]
    assert "loop closed" in output and "swapped v1 → v" in output
