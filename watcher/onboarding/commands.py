"""`warden model …`: the commands for bringing a model (encoder, init). The logic lives in
`encoder` and `first_version`; this module only parses options and prints."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from watcher.onboarding.startup import CONFIG_EXIT, guarded

if TYPE_CHECKING:  # imported when a command runs: `warden --help` stays quick
    from watcher.config import WardenConfig
    from watcher.onboarding.first_version import FirstVersion

model_app = typer.Typer(
    help="Bring your own model: the encoding it takes, a first trained version.",
    no_args_is_help=True,
)
console = Console()
ConfigOption = typer.Option(..., "--config", "-c", help="Path of the warden TOML config file.")
DebugOption = typer.Option(False, "--debug", help="Show the traceback of a failure.")
ModelArgument = typer.Argument(..., help="The model: NAME of its models.NAME config table.")


@model_app.command("encoder")
def encoder(
    model: str = ModelArgument,
    config: Path = ConfigOption,
    fit_on: Path | None = typer.Option(
        None, "--fit-on", help="Fit on this CSV/Parquet file instead of the reference."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the fitted encoding to DIR/encoder.json."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the encoding as JSON."),
    debug: bool = DebugOption,
) -> None:
    """Fit (or show) the encoding the daemon will use for MODEL: its width, the column order
    and the class order. Train the model on exactly this (`warden_encoder` in Python)."""

    def show() -> int:
        from watcher.onboarding.encoder import describe, document, summary, warden_encoder

        encoding = warden_encoder(config, model, fit_on)
        written = None
        if output is not None:
            written = encoding.save(output / "encoder.json")
        if as_json:
            typer.echo(json.dumps(document(model, encoding), indent=2))
            return 0
        lines = summary(model, encoding)
        console.print(escape(lines[0]), soft_wrap=True)
        console.print(escape(lines[1]), soft_wrap=True)
        table = Table("inputs", "feature", "encoded as", show_edge=False)
        for row in describe(encoding):
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
        for line in lines[2:]:
            console.print(escape(line), soft_wrap=True)
        if written is not None:
            console.print(
                f"wrote {written}; to make the daemon use this fit, add to [models.{model}]:",
                soft_wrap=True,
            )
            typer.echo(f'encoder_file = "{_relative(written, config)}"')
        elif fit_on is not None:
            console.print(
                "[yellow]note[/]: the daemon fits on the reference unless the model's "
                "encoder_file names this fit: add --output DIR",
                soft_wrap=True,
            )
        return 0

    raise typer.Exit(guarded(_config_errors(show, model), debug=debug))


@model_app.command("init")
def init(
    model: str = ModelArgument,
    config: Path = ConfigOption,
    train: Path = typer.Option(
        ..., "--train", help="Labelled training set (CSV/Parquet), not the reference."
    ),
    weights: Path | None = typer.Option(
        None, "--weights", help="Where to write the state dict (default: MODEL-v1.pt)."
    ),
    epochs: int = typer.Option(100, min=1, help="At most this many epochs."),
    patience: int = typer.Option(5, min=1, help="Stop after this many epochs without gain."),
    seed: int = typer.Option(0, help="Seeds initialisation and batching."),
    debug: bool = DebugOption,
) -> None:
    """Train a first version of MODEL's factory on a labelled training set with the daemon's
    encoding (early stopping on a held-out part), write the weights and print the config
    lines to add. The reference stays held out: the model is scored on it."""

    def train_it() -> int:
        from watcher.config import load_config

        cfg = load_config(config, check_files=False)
        target = weights or config.resolve().parent / f"{model}-v1.pt"
        done = _train_with_progress(cfg, model, train, target, epochs, patience, seed)
        _print_first_version(done, model, config)
        return 0

    raise typer.Exit(guarded(_config_errors(train_it, model), debug=debug))


def _train_with_progress(
    cfg: WardenConfig,
    model: str,
    train: Path,
    target: Path,
    epochs: int,
    patience: int,
    seed: int,
) -> FirstVersion:
    """`init_model`, with a progress bar of its epochs and their losses."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from watcher.onboarding.first_version import init_model

    progress = Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs  {task.fields[loss]}"),
        console=console,
    )
    with progress:
        task = progress.add_task("train", total=epochs, loss="")

        def on_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
            loss = f"train loss {train_loss:.4f}  val loss {val_loss:.4f}"
            progress.update(task, completed=epoch, loss=loss)

        return init_model(
            cfg,
            model,
            train,
            target,
            epochs=epochs,
            patience=patience,
            seed=seed,
            on_epoch=on_epoch,
        )


def _print_first_version(done: FirstVersion, model: str, config: Path) -> None:
    """What was trained, then the config lines that name it."""
    console.print(
        f"trained on {done.training_rows} rows in {done.seconds:.1f}s: {done.epochs_run} "
        f"epochs ({done.stopped_by.replace('_', ' ')}); reference {done.metric} "
        f"{done.reference_score:.4f}; wrote {done.weights}",
        soft_wrap=True,
    )
    console.print("add to the config (then `warden config check --files`):")
    for line in done.config_lines(model, config.resolve().parent):
        typer.echo(line)


def _relative(path: Path, config: Path) -> str:
    try:
        return str(path.resolve().relative_to(config.resolve().parent))
    except ValueError:
        return str(path.resolve())


def _config_errors(run: Callable[[], int], model: str) -> Callable[[], int]:
    """A ValueError of the user's data (a label that is no class, say) reads as a config
    error: one line naming the model, exit 2."""
    from watcher.onboarding.startup import StartupError, failure

    def wrapped() -> int:
        try:
            return run()
        except ValueError as exc:
            if failure(exc) is not None:
                raise
            raise StartupError(f"models.{model}: {exc}", CONFIG_EXIT) from exc

    return wrapped
