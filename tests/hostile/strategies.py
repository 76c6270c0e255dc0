"""Hypothesis strategies for hostile inputs, shared by the properties of the hostile suite."""

from __future__ import annotations

from hypothesis import strategies as st

JUNK = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.text(max_size=12),
                 st.sampled_from([0, -1, 2**31, -(2**63), 10**30]), st.integers(4301, 4400).map(lambda digits: 10**digits),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
FIELDS = {"conv": {"pad": st.integers(0, 2), "channels": st.integers(1, 16), "filter": st.integers(1, 5),
                   "stride": st.integers(1, 3), "pool": st.integers(1, 3),
                   "activation": st.sampled_from(["relu", "ELU", "linear", "tanh", " Gelu "])},
          "fc": {"neurons": st.integers(1, 64), "activation": st.sampled_from(["relu", "selu", "linear"])}}
HUGE = st.sampled_from([100_000, 10**6, 2**31 - 1])  # within the integer bound, over the size bounds


@st.composite
def specs(draw):
    """Valid spec dicts (short or long keys), each then mutated a few times: a field junk, huge,
    missing or doubled, a block junk, a key unknown; so every check of the builder is reached."""
    spec = {}
    conv, fc = draw(st.integers(0, 3)), draw(st.integers(1, 3))
    for kind, count in (("conv", conv), ("fc", fc)):
        for index in range(count):
            long = draw(st.booleans())
            spec[f"{kind}{index}"] = {(f"{kind}{index}_{field}" if long else field): draw(values)
                                      for field, values in FIELDS[kind].items()}
    last = spec[f"fc{fc - 1}"]
    last[next(key for key in last if key.endswith("neurons"))] = draw(st.integers(2, 12))
    last[next(key for key in last if key.endswith("activation"))] = draw(st.sampled_from(["softmax", "linear"]))
    if draw(st.booleans()):
        spec["dropout"] = draw(st.floats(0, 0.9))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(sorted(spec)))
        block, how = spec[name], draw(st.sampled_from(["junk", "huge", "missing", "double", "block", "key", "top"]))
        if how == "top":
            spec[draw(st.one_of(st.text(max_size=6), st.sampled_from(["conv7", "fc9", "conv01", "fc"])))] = draw(JUNK)
        elif how == "block" or not isinstance(block, dict) or not block:
            spec[name] = draw(JUNK)
        else:
            key = draw(st.sampled_from(sorted(block)))
            if how == "junk":
                block[key] = draw(JUNK)
            elif how == "huge":
                block[key] = draw(HUGE)
            elif how == "missing":
                del block[key]
            elif how == "double":
                block[key.split("_")[-1] if "_" in key else f"{name}_{key}"] = block[key]
            else:
                block[draw(st.text(max_size=6))] = 1
    return spec
