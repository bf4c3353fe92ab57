"""Model kinds behind one interface (`KindAdapter`): torch, scikit-learn, LightGBM, XGBoost.
A kind's framework is imported when a model of that kind is first used."""

from __future__ import annotations

import importlib

from correctors.kinds.base import KindAdapter

_ADAPTERS = {
    "torch": ("correctors.kinds.torch_kind", "TorchAdapter"),
    "sklearn": ("correctors.kinds.sklearn_kind", "SklearnAdapter"),
    "lightgbm": ("correctors.kinds.lightgbm_kind", "LightgbmAdapter"),
    "xgboost": ("correctors.kinds.xgboost_kind", "XgboostAdapter"),
}
KINDS = tuple(_ADAPTERS)


def adapter_for(kind: str) -> KindAdapter:
    """The adapter of `kind` (a card written before kinds existed is torch)."""
    try:
        module, name = _ADAPTERS[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}: expected one of {list(KINDS)}") from None
    adapter: KindAdapter = getattr(importlib.import_module(module), name)()
    return adapter
