"""Models saved as safetensors, loaded without pickle.

A trained model here is a `BertClassifier` whose structure a method may have
changed (CoFi's slicing leaves odd hidden, head and FFN widths; a policy adds
its own modules and settings). Pickling it whole (`torch.save(model)`) made
loading a shared work folder run whatever code the file names, and broke every
saved model when a class moved. Instead a checkpoint is one `.safetensors`
file: its tensors (every parameter and buffer, and tensor attributes) and, in
its metadata, the module tree as JSON: per module, the class by a stable name
and its plain attributes (numbers, strings, lists, dicts, dtypes, shapes).

Loading rebuilds each module without calling its `__init__` (the saved shapes
are what count, not the constructor's defaults): only classes that resolve
through a name are built, so nothing else can run:

* `torch:<Name>` - a `torch.nn` module (Linear, LayerNorm, ModuleList, ...);
* `core:<Name>` - a module class of `harness.model` (the encoder, the shared
  policies and heads), looked up by class name in `CORE_MODULES`;
* `method:<method>:<Name>` - a class defined in a registered method's plugin
  file, found through the method registry by the method's name, so moving or
  renaming the file breaks nothing while the registered name resolves.

Anything else in a model (a function, an open file, an unknown object) is a
clear error at save time, naming the attribute.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from harness.errors import HarnessError

FORMAT = "harness-model/1"
CORE_MODULES = ("harness.model.encoder", "harness.model.policy", "harness.model.thresholds", "harness.model.exits",
                "harness.model.skim", "harness.model.structure", "harness.model.trace")
# nn.Module's own bookkeeping, rebuilt by nn.Module.__init__ (hooks are not saved: none of the harness's models
# keeps one between forwards); read from torch itself, so a field a later torch adds is covered too
_MODULE_INTERNALS = frozenset(nn.Module().__dict__) | {"_compiled_call_impl"}


# ---- class names -------------------------------------------------------------------
def class_key(cls: type, method_of_module: dict[str, str]) -> str:
    """The stable name a checkpoint stores for `cls` (see the module doc); `method_of_module` maps a
    method file's module path to its registered name (the caller reads it from the registry)."""
    if cls.__module__.startswith("torch.nn") and getattr(nn, cls.__name__, None) is cls:
        return f"torch:{cls.__name__}"
    if cls.__module__ in CORE_MODULES:
        return f"core:{cls.__name__}"
    method = method_of_module.get(cls.__module__)
    if method is not None:
        return f"method:{method}:{cls.__name__}"
    raise HarnessError(f"a model holds a {cls.__module__}.{cls.__qualname__}, which a checkpoint cannot name",
                       "define model classes in harness.model or in a registered method's plugin file")


def resolve_class(key: str, module_of_method: Callable[[str], Any]) -> type:
    """The class a stored name stands for (`module_of_method`: a registered method's name -> its
    plugin file's module); only nn.Module subclasses and dataclasses (a shape, a policy's settings)
    resolve."""
    kind, _, rest = key.partition(":")
    cls = None
    if kind == "torch":
        cls = getattr(nn, rest, None)
    elif kind == "core":
        for mod in CORE_MODULES:
            cls = getattr(importlib.import_module(mod), rest, None)
            if cls is not None:
                break
    elif kind == "method":
        method, _, name = rest.partition(":")
        cls = getattr(module_of_method(method), name, None)
    if not (isinstance(cls, type) and (issubclass(cls, nn.Module) or dataclasses.is_dataclass(cls))):
        raise HarnessError(f"the checkpoint names a module class {key!r}, which does not resolve here",
                           "load it with the harness (and methods) it was saved with")
    return cls


# ---- attributes --------------------------------------------------------------------
def _encode(value, where: str, tensors: dict[str, torch.Tensor], keys: Callable[[type], str]):
    """A plain attribute as JSON; tensors go to the safetensors part under `where`; a dataclass
    (a shape, a policy's settings) by its class's stable name and its fields."""
    if isinstance(value, np.generic):  # numpy scalars (a knob read from an array) as Python's own
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"float": repr(float(value))}  # inf and nan included
    if isinstance(value, np.ndarray) and value.dtype != object:
        key = f"@{len(tensors)}:{where}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
        return {"ndarray": key}
    if isinstance(value, torch.Tensor):
        key = f"@{len(tensors)}:{where}"  # numbered: two attribute paths never share a key
        tensors[key] = value.detach().contiguous()
        return {"tensor": key}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.Size):
        return {"size": list(value)}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{where}.{i}", tensors, keys) for i, v in enumerate(value)]
        return items if isinstance(value, list) else {"tuple": items}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: _encode(v, f"{where}.{k}", tensors, keys) for k, v in value.items()}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _encode(getattr(value, f.name), f"{where}.{f.name}", tensors, keys)
                  for f in dataclasses.fields(value)}
        return {"dataclass": {"class": keys(type(value)), "fields": fields}}
    raise HarnessError(f"model attribute {where} is a {type(value).__qualname__}, which a checkpoint cannot store",
                       "keep a policy's settings as numbers, strings, lists, dicts or tensors")


def _decode(value, tensors: dict[str, torch.Tensor], classes: Callable[[str], type]):
    if not isinstance(value, (list, dict)):
        return value
    if isinstance(value, list):
        return [_decode(v, tensors, classes) for v in value]
    (kind, inner), = value.items()
    if kind == "float":
        return float(inner)
    if kind == "tensor":
        return tensors[inner]
    if kind == "ndarray":
        return tensors[inner].cpu().numpy()
    if kind == "dtype":
        dtype = getattr(torch, str(inner), None)
        if not isinstance(dtype, torch.dtype):
            raise HarnessError(f"a checkpoint names the dtype {inner!r}, which is not one", "load a harness checkpoint")
        return dtype
    if kind == "size":
        return torch.Size(inner)
    if kind == "device":
        return torch.device(inner)
    if kind == "tuple":
        return tuple(_decode(v, tensors, classes) for v in inner)
    if kind == "dict":
        return {k: _decode(v, tensors, classes) for k, v in inner.items()}
    if kind == "dataclass":
        cls = classes(inner["class"])
        if not dataclasses.is_dataclass(cls) or set(inner["fields"]) != {f.name for f in dataclasses.fields(cls)}:
            raise HarnessError(f"a checkpoint's {inner['class']} does not hold that class's fields",
                               "load it with the harness (and methods) it was saved with")
        obj = cls.__new__(cls)
        for k, v in inner["fields"].items():
            object.__setattr__(obj, k, _decode(v, tensors, classes))  # frozen ones too
        return obj
    raise HarnessError(f"unknown attribute encoding {kind!r} in a checkpoint", "load it with the harness that saved it")


def _attributes(module: nn.Module) -> dict:
    return {k: v for k, v in module.__getstate__().items() if k not in _MODULE_INTERNALS}


def _settable(cls: type, name: str) -> bool:
    """An attribute a checkpoint may set on a rebuilt module: not torch's bookkeeping, not a dunder, and
    not a method or property of the class (a file must not replace code)."""
    on_class = getattr(cls, name, None)
    return (name not in _MODULE_INTERNALS and not (name.startswith("__") and name.endswith("__"))
            and not callable(on_class) and not isinstance(on_class, property))


# ---- the tree ----------------------------------------------------------------------
class _Seen:
    """Identity while walking a tree: a module or parameter reached twice is stored once and tied again
    on load (a shared head, tied weights), so a loaded model has the parameters the saved one had."""

    def __init__(self):
        self.modules: dict[int, str] = {}
        self.tensors: dict[int, str] = {}


def describe(module: nn.Module, prefix: str, tensors: dict[str, torch.Tensor], keys: Callable[[type], str],
             seen: _Seen | None = None) -> dict:
    """The module tree below `module` as JSON, its tensors added to `tensors`."""
    seen = seen if seen is not None else _Seen()
    if id(module) in seen.modules:
        return {"same_as": seen.modules[id(module)]}
    seen.modules[id(module)] = prefix
    node: dict[str, Any] = {"class": keys(type(module)), "training": module.training}
    params, buffers = {}, {}
    for kind, items, out in (("parameter", module._parameters, params), ("buffer", module._buffers, buffers)):
        for name, t in items.items():
            if t is None:
                out[name] = None
                continue
            spec = ({"requires_grad": t.requires_grad} if kind == "parameter"
                    else {"persistent": name not in module._non_persistent_buffers_set})
            if id(t) in seen.tensors:
                spec["same_as"] = seen.tensors[id(t)]
            else:
                seen.tensors[id(t)] = tensors_key = f"{prefix}{name}"
                tensors[tensors_key] = t.detach().contiguous()
            out[name] = spec
    node["parameters"], node["buffers"] = params, buffers
    node["attributes"] = {k: _encode(v, f"{prefix}{k}", tensors, keys) for k, v in _attributes(module).items()}
    node["children"] = {name: None if child is None else describe(child, f"{prefix}{name}.", tensors, keys, seen)
                        for name, child in module._modules.items()}
    return node


def build(node: dict, prefix: str, tensors: dict[str, torch.Tensor], classes: Callable[[str], type],
          built: dict[str, Any] | None = None) -> nn.Module:
    built = built if built is not None else {}
    if "same_as" in node:
        return built[node["same_as"]]
    cls = classes(node["class"])
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    built[prefix] = module
    for k, v in node["attributes"].items():
        if not _settable(cls, k):
            raise HarnessError(f"a checkpoint sets {prefix}{k} on a {cls.__name__}, which only code may set",
                               "load a checkpoint the harness wrote")
        object.__setattr__(module, k, _decode(v, tensors, classes))
    for kind, specs in (("parameter", node["parameters"]), ("buffer", node["buffers"])):
        for name, spec in specs.items():
            if "." in name or not _settable(cls, name):
                raise HarnessError(f"a checkpoint names the {kind} {prefix}{name}, which a module cannot hold",
                                   "load a checkpoint the harness wrote")
            if spec is None:
                value = None
            elif "same_as" in spec:
                value = built[spec["same_as"]]
            elif kind == "parameter":
                value = built[f"{prefix}{name}"] = nn.Parameter(tensors[f"{prefix}{name}"],
                                                               requires_grad=spec["requires_grad"])
            else:
                value = built[f"{prefix}{name}"] = tensors[f"{prefix}{name}"]
            if kind == "parameter":
                module._parameters[name] = value
            else:
                module._buffers[name] = value
                if spec is not None and not spec["persistent"]:
                    module._non_persistent_buffers_set.add(name)
    for name, child in node["children"].items():
        module._modules[name] = None if child is None else build(child, f"{prefix}{name}.", tensors, classes, built)
    module.training = bool(node["training"])
    return module


def _shared_storage_free(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory: a view into a larger tensor, or two distinct tensors
    over one storage, is stored as its own copy (ties between parameters are kept by `same_as` above)."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for k, t in tensors.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else (id(t), 0)
        out[k] = t.clone() if key in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size() else t
        seen.add(key)
    return out


def save_model(model: nn.Module, path: str | Path, method_of_module: dict[str, str]) -> None:
    """Write `model` as one safetensors file (tensors on CPU; the tree in its metadata)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tree = describe(model, "", tensors, lambda cls: class_key(cls, method_of_module))
    cpu = {k: t.to("cpu") for k, t in _shared_storage_free(tensors).items()}
    save_file(cpu, str(path), metadata={"format": FORMAT, "tree": json.dumps(tree)})


def load_model(path: str | Path, module_of_method: Callable[[str], Any], device: str = "cpu") -> nn.Module:
    """Rebuild a model `save_model` wrote; no pickle is read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or "tree" not in meta:
                raise HarnessError(f"{path} is not a harness model checkpoint (format {meta.get('format')!r})",
                                   "train it again with this harness")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return build(json.loads(meta["tree"]), "", tensors, lambda key: resolve_class(key, module_of_method))
    except HarnessError:
        raise
    except Exception as e:  # a truncated or foreign file
        raise HarnessError(f"{path} could not be read as a model checkpoint ({type(e).__name__}: {e})",
                           "train it again (delete the file and rerun its train step)") from None
