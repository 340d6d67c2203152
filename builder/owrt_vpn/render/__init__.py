"""From a site and its PKI to the files baked into the image (pure render)."""
