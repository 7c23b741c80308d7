"""The files layer: our checkpoints, tokenizers, session files, exports, sample prompts and
the bundled resources. Other tools' model formats are the model families of
:mod:`gptviz.families`."""
