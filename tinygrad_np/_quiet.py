"""IEEE special values without NumPy's warnings, as in PyTorch.

An op that meets an inf or a NaN gives the IEEE result (``log(0)`` is -inf, ``0 * inf``
is NaN, a float32 power past 3.4e38 is inf) and says nothing, as PyTorch's do: the
values are the report, and ``tinygrad_np.detect_anomaly()`` names the op that made the
first NaN or inf. NumPy would print a RuntimeWarning ("divide by zero encountered in
log") from the line inside tinygrad_np that called it, a line the user never wrote.

So importing tinygrad_np adds one warnings filter: RuntimeWarnings with NumPy's
floating-point messages, raised by code in tinygrad_np's own modules, are ignored. It
costs nothing per op (a filter is read only when a warning is raised) and touches no
other warning: NumPy's in the user's own code, tinygrad_np's own warnings (other
categories) and NumPy's error settings are as they were, so ``np.seterr(all="raise")``
or ``np.errstate(invalid="raise")`` still raise ``FloatingPointError`` inside the ops,
and a filter the user adds later (``warnings.simplefilter("error")``) comes first.
"""

import warnings

#: NumPy's messages for the four floating-point conditions (numpy/_core/_ufunc_config)
IEEE_MESSAGES = r"(divide by zero|overflow|underflow|invalid value) encountered"
#: tinygrad_np and its submodules, by the module a warning is attributed to
OWN_MODULES = r"tinygrad_np(\.|$)"


def quiet_ieee_warnings() -> None:
    """Install the filter (once: ``filterwarnings`` drops an identical earlier entry)."""
    warnings.filterwarnings(
        "ignore", message=IEEE_MESSAGES, category=RuntimeWarning, module=OWN_MODULES
    )
