"""The plugin API: what a method file in `methods/` imports.

    from harness.plugin import MethodPlugin, MethodSettings, OperatingPoint, register_method
"""
from harness.plugin.base import MethodPlugin, OperatingPoint
from harness.plugin.registry import get_method, method_names, register_method
from harness.plugin.settings import MethodSettings

__all__ = ["MethodPlugin", "MethodSettings", "OperatingPoint", "get_method", "method_names", "register_method"]
