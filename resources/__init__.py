"""gptviz's bundled files, installed as the package ``gptviz_resources``: the trained model
(``model/``), the sample prompts (``prompts.json``) and the app icon (``icon.png``).

Code finds them through :func:`gptviz.io.resources.resource_path`, never by this name.
"""
