"""The PEFT table: pre-train the byte-level GPT on one domain of the corpus, adapt it to another.

See `experiments/peft_char_lm.py` for the domains and methods. Presets: `pretrain`; one per method
(`frozen`, `full`, `lora`, `adapter`, `prefix`, `prompt`, `bitfit`, `ia3`), each needing
`--config.peft.pretrained=<pretrain workdir>`; `tiny` and `tiny_pretrain` for tests.

Settings, and where they come from:
  - Model: `gpt_bytes_small` (4 layers, width 128, context 128), as `char_lm.py:small`.
  - Pre-training: `char_lm.py:small`'s recipe (AdamW 2e-3, cosine, 1,500 steps of 32 windows).
  - Adaptation: 600 steps of 32 windows with Adam and a cosine schedule; the learning rate is the
    one thing set per method, as each paper tunes its own: 5e-4 for full fine-tuning (below the
    pre-training rate) and 3e-3 for BitFit and LoRA; adapters, prefix and prompt tuning use
    larger rates (1e-2; Lester et al. use 0.3 with Adafactor for prompts). LoRA: r = 8, alpha = 16
    on the query and value projections (section 7.1); adapters: bottleneck 16 (Houlsby et al.
    sweep 8 to 256), LayerNorms trained too; prefix and prompt: 16 positions. These rates were
    chosen once, not tuned on the held-out figures.
"""

import ml_collections

from experiments.configs import char_lm, select

RATES = {'pretrain': 2e-3, 'frozen': 0.0, 'full': 5e-4, 'lora': 3e-3, 'adapter': 1e-2,
         'prefix': 1e-2, 'prompt': 1e-2, 'bitfit': 3e-3, 'ia3': 1e-2}


def base(method: str) -> ml_collections.ConfigDict:
  c = char_lm.small()
  del c.evals, c.sample
  c.peft = ml_collections.ConfigDict(dict(method=method, pretrained='', rank=8, lora_alpha=16.0,
                                          bottleneck=16, prefix_length=16))
  if method != 'pretrain':
    c.optim = ml_collections.ConfigDict(dict(
        name='adam', learning_rate=RATES[method], schedule='cosine',
        warmup_steps=0 if method == 'frozen' else 20, grad_clip_norm=1.0))
    c.train.update(steps=1 if method == 'frozen' else 600, eval_every=200, checkpoint_every=600)
  return c


def tiny_pretrain() -> ml_collections.ConfigDict:
  c = base('pretrain')
  c.data.update(context=16, train_stride=97, eval_windows=24)
  c.model.name = 'gpt_bytes_tiny'
  c.optim.update(learning_rate=1e-2, warmup_steps=2)
  c.train.update(steps=4, batch_size=16, log_every=2, eval_every=0, checkpoint_every=4)
  return c


def tiny() -> ml_collections.ConfigDict:
  c = tiny_pretrain()
  c.peft.method = 'lora'
  c.peft.update(rank=2, bottleneck=4, prefix_length=4)
  c.optim = ml_collections.ConfigDict(dict(name='adam', learning_rate=1e-2, schedule='constant',
                                           warmup_steps=0, grad_clip_norm=1.0))
  return c


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  table = {m: (lambda m=m: base(m)) for m in RATES}
  table.update(tiny=tiny, tiny_pretrain=tiny_pretrain)
  return select(preset, table, default='pretrain')
