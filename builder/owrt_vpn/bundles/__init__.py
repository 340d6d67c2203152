"""Client bundles: one module per platform, the writer, and the README templates."""
