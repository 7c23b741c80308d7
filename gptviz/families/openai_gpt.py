"""The Hugging Face GPT-1 family (``OpenAIGPTLMHeadModel``): ``config.json`` with
``model_type: "openai-gpt"``.

GPT-1 in ``transformers`` does **not** use ``ACT2FN``: ``modeling_openai.ACT_FNS["gelu"]`` is
``gelu_new``, the tanh approximation (as in OpenAI's original code), so ``afn="gelu"`` maps to
our ``"gelu_tanh"``.
"""

from __future__ import annotations

from pathlib import Path

from gptviz.families.hf_common import (
    config_bool,
    config_choice,
    config_float,
    config_int,
    hf_model,
    make_config,
    require_dir,
)
from gptviz.io.checkpoint import CheckpointError, ModelBundle, read_json
from gptviz.io.tensor_files import read_hf_weights, short_message
from gptviz.io.tokenizer_files import (
    bpe_files,
    check_tokenizer,
    openai_gpt_tokenizer,
    tokenizer_from_json,
)

#: GPT-1 ``afn`` values (``transformers.models.openai.modeling_openai.ACT_FNS``) -> ours.
OPENAI_GPT_ACTIVATIONS = {
    "gelu": "gelu_tanh",  # ACT_FNS["gelu"] is gelu_new: the tanh approximation
    "relu": "relu",
}


def load_hf_openai_gpt(directory: str | Path) -> ModelBundle:
    """Open a Hugging Face ``OpenAIGPTLMHeadModel`` (GPT-1) directory.

    Post-LayerNorm blocks, no final LayerNorm, tanh-approximated GELU (what ``afn="gelu"``
    means in ``transformers``' GPT-1), Conv1D weights transposed, tied head. Tokenizer:
    ``tokenizer.json`` or ``vocab.json`` + ``merges.txt`` (see :func:`openai_gpt_tokenizer`;
    it lowercases, so text does not round-trip exactly).

    Raises
    ------
    CheckpointError
        Missing/broken files, an unsupported variant, or weights that do not fit the config.
    """
    d = require_dir(directory)
    cfg_path = d / "config.json"
    cfg = read_json(cfg_path)
    if cfg.get("model_type", "openai-gpt") != "openai-gpt":
        raise CheckpointError(f"{cfg_path}: model_type is {cfg.get('model_type')!r}, "
                              "not 'openai-gpt'")
    afn = config_choice(cfg, cfg_path, "afn", "gelu", OPENAI_GPT_ACTIVATIONS)
    tied = config_bool(cfg, cfg_path, "tie_word_embeddings", True)
    config = make_config(
        cfg_path,
        n_layer=config_int(cfg, cfg_path, "n_layer", "num_hidden_layers"),
        n_head=config_int(cfg, cfg_path, "n_head", "num_attention_heads"),
        n_embd=config_int(cfg, cfg_path, "n_embd", "hidden_size"),
        block_size=config_int(cfg, cfg_path, "n_positions", "n_ctx", "max_position_embeddings"),
        vocab_size=config_int(cfg, cfg_path, "vocab_size"),
        dropout=0.0, ln_placement="post", final_ln=False,
        activation=OPENAI_GPT_ACTIVATIONS[afn], bias=True,
        layer_norm_eps=config_float(cfg, cfg_path, "layer_norm_epsilon", 1e-5),
        name=d.resolve().name,
    )
    state, weights_path = read_hf_weights(d)
    model = hf_model(config, state, weights_path,
                     rename={"tokens_embed.weight": "wte.weight",
                             "positions_embed.weight": "wpe.weight"},
                     tie_word_embeddings=tied, config_path=cfg_path)
    if (d / "tokenizer.json").is_file():
        tok_path = d / "tokenizer.json"
        tokenizer = tokenizer_from_json(tok_path)
    else:
        files = bpe_files(d, "the GPT-1 tokenizer")
        if files is None:
            raise CheckpointError(f"{d}: no tokenizer found: put tokenizer.json, or vocab.json "
                                  "and merges.txt (GPT-1 BPE), in the model directory")
        tok_path = files[0]
        try:
            tokenizer = openai_gpt_tokenizer(*files)
        except Exception as e:
            raise CheckpointError(f"{files[0]} / {files[1].name}: not a valid BPE vocabulary "
                                  f"({short_message(str(e))})") from None
    check_tokenizer(tokenizer, tok_path, config)
    metadata = {"source_format": "huggingface OpenAIGPTLMHeadModel",
                "architectures": cfg.get("architectures"),
                "transformers_version": cfg.get("transformers_version"),
                "afn": afn,
                "tokenizer_note": "GPT-1's tokenizer lowercases and splits punctuation: "
                                  "decoded text is not an exact round trip"}
    return ModelBundle(model=model, tokenizer=tokenizer, metadata=metadata, source=str(d),
                       kind="hf-openai-gpt")


def recognises(path: Path) -> bool:
    """A folder whose ``config.json`` says ``model_type: "openai-gpt"``."""
    try:
        return path.is_dir() and read_json(path / "config.json").get("model_type") == "openai-gpt"
    except CheckpointError:
        return False
