"""The portal's Jinja2 templates, installed as the package ``portal.templates``.

Only this marker is Python: it lets an editable install and ``pip install .``
alike place this folder at ``portal/templates`` (see ``pyproject.toml``).
"""
