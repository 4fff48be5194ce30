"""Show and Tell on the tiny captioned shapes, run in-process, with BLEU through sacrebleu."""

import json

from experiments import show_and_tell
from experiments.configs import show_and_tell as configs
from jaxpapers.data import shapes_captions
from jaxpapers.evaluators import captioning
from jaxpapers.train import devices, loop


def test_bleu_is_sacrebleus_and_references_cover_every_template():
  refs = shapes_captions.all_captions(0, 1, 0, 2)
  assert len(refs) == len(shapes_captions.CAPTION_TEMPLATES) and 'a green circle.' in refs
  assert abs(captioning.corpus_bleu(['a green circle.'], [refs]) - 100.0) < 1e-6
  assert captioning.corpus_bleu(['a red square on the left.'], [refs]) < 30.0
  tok = shapes_captions.tokenizer()
  assert shapes_captions.decode(tok, tok.encode('a green circle.')[1:] + [0, 0]) == 'a green circle.'


def test_tiny_run_reports_caption_bleu_and_the_baseline(tmp_path):
  config = configs.get_config('tiny')
  results = loop.train_and_evaluate(show_and_tell.ShowAndTellExperiment(config, devices.make_mesh()),
                                    str(tmp_path))
  saved = json.loads((tmp_path / 'results.json').read_text())['eval']
  assert {'loss', 'word_accuracy', 'bleu_bleu', 'bleu_exact', 'bleu_nn_bleu'} <= set(saved)
  assert 0.0 <= saved['bleu_bleu'] <= 100.0 and saved['bleu_nn_bleu'] > 10.0
  assert results['train_step_compilations'] == 1
