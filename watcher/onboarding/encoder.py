"""The encoding a model is trained on, as the daemon will use it: for training scripts
(`warden_encoder`) and for `warden model encoder` (what it prints)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from watcher.config import ConfigError, WardenConfig, load_config

if TYPE_CHECKING:
    import pandas as pd

    from correctors.models.fitting import ModelEncoding

SHOWN_VALUES = 8  # category values listed per column in the description


def warden_encoder(
    config: str | Path | WardenConfig,
    model: str,
    fit_on: str | Path | pd.DataFrame | None = None,
) -> ModelEncoding:
    """The encoding the daemon uses for `model`: fitted on the reference (or read from the
    model's `encoder_file`), with its class order. `fit_on` (a file or a data frame) fits it
    there instead; the daemon then needs that fit as `encoder_file`
    (`warden model encoder --fit-on FILE --output DIR` writes it).

    `encoding.transform(frame)` gives the model's input, `encoding.targets(frame)` the class
    indices (or values) to train on; `width`, `columns` and `classes` say what they are.
    Only the reference must exist: the weights may not have been trained yet."""
    from correctors.models.fitting import model_encoding

    cfg = config if isinstance(config, WardenConfig) else load_config(config, check_files=False)
    if model not in cfg.models:
        where = config if not isinstance(config, WardenConfig) else "the config"
        raise ConfigError(f"{where}: no models.{model} (have: {', '.join(cfg.models) or 'none'})")
    return model_encoding(cfg.models[model], fit_on)


def describe(encoding: ModelEncoding) -> list[tuple[str, str, str]]:
    """(inputs, feature, how it is encoded) per feature, in input order."""
    enc, rows, at = encoding.encoder, [], 0
    for col in enc.numeric:
        stats = f"mean {enc.means[col]:.4g}, std {enc.stds[col]:.4g}"
        how = (
            f"float32 as given, missing → NaN (reference {stats})"
            if enc.raw
            else f"standardised ({stats}), clipped ±{enc.clip_sd:g} sd, missing → 0"
        )
        rows.append((str(at), col, how))
        at += 1
    for col in enc.categorical:
        vocab = enc.vocab[col]
        shown = ", ".join(vocab[:SHOWN_VALUES]) + (", …" if len(vocab) > SHOWN_VALUES else "")
        if enc.raw:
            how = f"code 0-{len(vocab) - 1} in this order: {shown}; unseen/missing → {len(vocab)}"
            rows.append((str(at), col, how))
            at += 1
        else:
            how = f"one-hot: {shown}, then <unknown> (unseen/missing)"
            rows.append((f"{at}-{at + len(vocab)}", col, how))
            at += len(vocab) + 1
    for col in enc.text:
        how = f"hashed bag of words, {enc.buckets} slots, log-scaled, L2-normalised"
        rows.append((f"{at}-{at + enc.buckets - 1}", col, how))
        at += enc.buckets
    return rows


def summary(name: str, encoding: ModelEncoding) -> list[str]:
    """The lines `warden model encoder` prints above and below the column table."""
    out = [
        f"models.{name}: {encoding.encoder.encoding} encoding fitted on {encoding.fitted_on}",
        f"width: {encoding.width} inputs (float32) → {encoding.outputs} output(s) per row "
        f"(the built-in factories: {_sizes(encoding)})",
    ]
    if encoding.task == "regression":
        out.append("output: one value per row (regression)")
    else:
        order = ", ".join(f"{i} = {c!r}" for i, c in enumerate(encoding.classes))
        out.append(f"classes (output order, label as text): {order}")
    return out


def _sizes(encoding: ModelEncoding) -> str:
    if encoding.task == "regression":
        return f"factory_kwargs = {{ n_inputs = {encoding.width} }}"
    return f"factory_kwargs = {{ n_inputs = {encoding.width}, n_classes = {encoding.outputs} }}"


def document(name: str, encoding: ModelEncoding) -> dict[str, Any]:
    """`warden model encoder --json`: the encoding file's content plus the model's name."""
    return {"model": name, **encoding.to_dict()}
