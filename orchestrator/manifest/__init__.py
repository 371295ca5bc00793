"""The input side: a YAML manifest read safely, expanded into jobs, validated and keyed.

Nothing here touches the network or the ledger: a manifest is turned into job specs (request,
price, output path, stable key) before anything is sent or written. Modules: ``yaml_safe``
(YAML for hostile input), ``manifest`` (the file's top level), ``entries`` (defaults, expand,
takes), ``defaults`` (``defaults_by_model:``, ``null`` unsets, a default's source in errors),
``planning`` (per-job checks and keys), ``output_paths`` (safe, unique file paths),
``local_files`` (images to upload).
"""
