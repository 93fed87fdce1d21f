"""Face Lab UI: one module per tab, each exposing ``build()``. No maths here, only layout and wiring."""
