"""The check types: one module each, all of one shape (`base`); `registry` lists them by name."""
