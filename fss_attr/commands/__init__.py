"""Sub-commands of ``fss-attr``: one module each (see fss_attr.cli)."""
