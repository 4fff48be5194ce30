"""Object detection: SSD, DETR, Deformable DETR, Mask R-CNN, RetinaNet, RelationNet++ or ViLD from
the zoo on a dataset with boxes (scenes).

    python -m experiments.detect --config=experiments/configs/detect.py:detr_scenes \
        --workdir=runs/detr_scenes

`config.detector` says how a model's outputs are trained and read out:
  ssd    outputs (logits [B, D, 1 + C], offsets [B, D, 4]) over the model's default boxes; the
         MultiBox loss of each image (`detection.ssd.multibox_loss`: matching, hard negatives,
         smooth L1), averaged over the batch; detections by class-aware NMS (`ssd.detections`).
  detr   outputs {'logits', 'boxes'} of every decoder layer; the Hungarian loss summed over layers
         (`detection.detr.detr_loss`, with `config.loss` keyword arguments: Deformable DETR's
         `classification='focal', w_class=2`); detections by `detr.detections`.
  rcnn   a two-stage detector (`detection.mask_rcnn.MaskRCNN`) computes its own losses from the
         ground truth (`method='losses'`: RPN, box head and, with masks, mask head), drawing its
         anchor and RoI samples from the step's key; its outputs are detections, with masks
         (pasted into the image, threshold 0.5) for the evaluator's mask AP. Ground-truth boxes
         stay in pixels; masks come from the batch's `instances` (preprocess
         `instance_detection`).
  dense  anchor-based dense detectors that own their loss and read-out (RetinaNet, with or without
         RelationNet++'s BVR): outputs {'logits', 'offsets', ...}; `model.loss` on boxes in
         pixels, `model.detections`.
  vild   open-vocabulary two-stage detection (`detection.vild.ViLD`, Gu et al. 2021) on the scenes'
         base classes (preprocess `base_detection`) with a frozen CLIP teacher restored from the run
         directory `config.vild.clip_workdir` (a `experiments.clip` run, zoo model
         `config.vild.clip`). The classifier is the CLIP text embedding of every class name (the
         novel ones masked out of the training softmax by `class_valid`), each the normalised mean
         over `shapes_captions`' caption template "a photo of a {size} {colour} {shape}." for
         every size and colour (the attributes a class name leaves open). ViLD-image (as the
         paper, secs. 3.3 and 4): the M proposals per training image and CLIP's embeddings of
         their crops precomputed once by `scripts/vild_precompute.py` from a two-stage detector
         trained on the base classes (`fasterrcnn_base_scenes`), read from
         `config.vild.proposals` (its output file or directory) and joined to each example by its
         position in the train split on the host (`pipeline.Splits.train_rows`); the step runs
         neither a second first stage nor CLIP. With `config.vild.proposals=''` only ViLD-text
         is trained (the paper's ViLD-text ablation). The eval split has no precomputed
         proposals: its loss has no image term. Detections over all classes, as `rcnn`.
Ground-truth boxes arrive in pixels (x0, y0, x1, y1) and are normalised by the image size (SSD:
xyxy, DETR: cxcywh; dense detectors keep pixels). The eval step reports the loss on the test split;
the `detection` evaluator the COCO box AP of `detect` (through pycocotools).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import clip as clip_experiment
from jaxpapers import zoo
from jaxpapers.contrastive import clip
from jaxpapers.data import pipeline, scenes, shapes_captions
from jaxpapers.detection import boxes as box_lib
from jaxpapers.detection import detr, mask_rcnn, ssd
from jaxpapers.errors import ConfigError
from jaxpapers.train import checkpoint, cli, optim
from jaxpapers.train.loop import Experiment
from jaxpapers.train.state import TrainState

DETECTORS = ('ssd', 'detr', 'rcnn', 'dense', 'vild')
CROP_SIZE = shapes_captions.IMAGE_SIZE  # ViLD-image's crops: the CLIP image tower's input size
# ... of each box scaled by these. The project's CLIP saw shapes whose box spans 1/2 to 1/4.5 of the
# frame: on the precomputed proposals that cover a cross it names the cross 5% of the time with the
# paper's 1 and 1.5, 34% with 1.5 and 2, 65% with 2 and 2.5 (WORKSPACE.md).
CROP_SCALES = (2.0, 2.5)
PROPOSALS_FILE = 'proposals.npz'  # `scripts/vild_precompute.py`'s output in its directory
# The arrays of that file that the training examples get, row i to example i of the train split.
PROPOSAL_FEATURES = ('proposal_boxes', 'proposal_embeddings', 'proposal_valid')


def clip_teacher(clip_config, clip_workdir: str):
  """ViLD's frozen CLIP restored from an `experiments.clip` run: its text embeddings of every
  class [C, D] (module docstring) and `encode_crops`, crops [K, 32, 32, 3] of [0, 1] images ->
  image embeddings [K, D]."""
  tokenizer = shapes_captions.tokenizer()
  teacher = zoo.build_from_config(clip_config, vocab_size=tokenizer.vocab_size)
  variables = jax.tree.map(jnp.asarray, checkpoint.load_variables(clip_workdir))
  prompts = [f'a photo of a {size} {colour} {shape}.' for shape in scenes.CLASSES
             for size in shapes_captions.SIZES for colour in shapes_captions.COLOUR_NAMES]
  tokens = tokenizer(prompts, teacher.context_length)
  text = clip.l2_normalize(teacher.apply(variables, tokens, method='encode_text'))
  text_embeddings = np.asarray(clip.l2_normalize(
      text.reshape(len(scenes.CLASSES), -1, text.shape[-1]).mean(1)))

  def encode_crops(crops):  # crops of [0, 1] images -> CLIP's input statistics
    return teacher.apply(variables, clip_experiment.normalize_images(crops * 255.0),
                         method='encode_image')

  return text_embeddings, encode_crops


def load_proposals(path: str, dataset: str, num_examples: int,
                   embed_dim: int) -> dict[str, np.ndarray]:
  """ViLD-image's precomputed proposals (`scripts/vild_precompute.py`; `path` its file or output
  directory): {'proposal_boxes' [N, M, 4], 'proposal_embeddings' [N, M, D], 'proposal_valid'
  [N, M]}, checked against the train split (`dataset`, N examples) and the teacher's width D."""
  if os.path.isdir(path):
    path = os.path.join(path, PROPOSALS_FILE)
  if not os.path.exists(path):
    raise ConfigError(f'config.vild.proposals: no file {path}; write it with '
                      'scripts/vild_precompute.py')
  with np.load(path) as f:
    arrays = {name: f[name] for name in (*PROPOSAL_FEATURES, 'dataset')}
  n, _, d = arrays['proposal_embeddings'].shape
  if str(arrays['dataset']) != dataset or n != num_examples:
    raise ConfigError(f'{path} holds proposals of {n} examples of {str(arrays["dataset"])!r}; '
                      f'the train split has {num_examples} of {dataset!r}')
  if d != embed_dim:
    raise ConfigError(f'{path} holds teacher embeddings of width {d}; the teacher '
                      f'(config.vild.clip) embeds to {embed_dim}')
  return {name: arrays[name] for name in PROPOSAL_FEATURES}


class Detect(Experiment):

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    if config.detector not in DETECTORS:
      raise ConfigError(f'config.detector={config.detector!r}; valid: {", ".join(DETECTORS)}')
    self.data = pipeline.from_config(config.data)
    overrides = {}
    if config.detector == 'vild':
      self._init_vild(config.vild)
      overrides['embed_dim'] = self.text_embeddings.shape[1]
    self.model = zoo.build_from_config(config.model, **overrides)
    self._image_shape = self.data.example()['image'].shape
    self.tx = optim.make_optimizer(config.optim, config.train.steps)
    self.loss_kwargs = dict(config.get('loss', {}))
    if config.detector == 'ssd':
      self.anchors = self.model.default_boxes()

  def _init_vild(self, c):
    """The teacher's class embeddings, the training (base) classes and ViLD-image's targets."""
    self.text_embeddings, _ = clip_teacher(c.clip, c.clip_workdir)
    self.class_valid = scenes.base_class_mask()
    if c.proposals:
      rows = load_proposals(c.proposals, self.config.data.name, len(self.data.train),
                            self.text_embeddings.shape[1])
      self.data = dataclasses.replace(self.data, train_rows=rows)

  def init(self, rng):
    example = jnp.zeros((1, *self._image_shape))
    if self.config.detector != 'vild':
      return TrainState.init_model(self.model, example, tx=self.tx, rng=rng)
    variables = self.model.init(rng, example, self.text_embeddings, train=False)
    params = variables.pop('params')
    return TrainState.create(params=params, tx=self.tx, rng=rng, model_state=dict(variables))

  def losses(self, outputs, batch) -> dict[str, jax.Array]:
    """The detector's loss and its terms on one batch (examples with no objects add nothing)."""
    if self.config.detector == 'dense':
      return self.model.loss(outputs, batch['boxes'], batch['labels'])
    h, w = self._image_shape[:2]
    gt = batch['boxes'] / jnp.array([w, h, w, h], jnp.float32)
    if self.config.detector == 'ssd':
      logits, offsets = outputs
      per_image = jax.vmap(lambda lg, of, b, lb: ssd.multibox_loss(lg, of, self.anchors, b, lb))(
          logits, offsets, gt, batch['labels'])
      return {k: v.mean() for k, v in per_image.items()}
    return detr.detr_loss(outputs, batch['labels'], box_lib.xyxy_to_cxcywh(gt), **self.loss_kwargs)

  def rcnn_losses(self, variables, batch, key, train: bool, mutable=False):
    """The two-stage detector's loss terms (and its updated model state with `mutable`)."""
    instances = batch.get('instances')
    masks = None
    if instances is not None:
      slots = jnp.arange(1, batch['labels'].shape[1] + 1)
      masks = instances[:, None] == slots[None, :, None, None]
    return self.model.apply(variables, batch['image'], batch['boxes'], batch['labels'], masks, key,
                            train=train, method='losses', mutable=mutable)

  def vild_losses(self, variables, batch, key, train: bool, mutable=False):
    """ViLD's loss terms: ViLD-text over the base classes, and ViLD-image where the batch has
    precomputed proposals (training batches with `config.vild.proposals`)."""
    image = {}
    if 'proposal_boxes' in batch:
      image = dict(image_boxes=batch['proposal_boxes'],
                   image_embeddings=batch['proposal_embeddings'],
                   image_valid=batch['proposal_valid'])
    return self.model.apply(
        variables, batch['image'], batch['boxes'], batch['labels'], key, self.text_embeddings,
        class_valid=self.class_valid, train=train, method='losses', mutable=mutable, **image)

  def train_step(self, state: TrainState, batch):
    def loss_fn(params):
      variables = {'params': params, **state.model_state}
      mutable = list(state.model_state)
      if self.config.detector == 'rcnn':
        terms, model_state = self.rcnn_losses(variables, batch, state.step_rng('sampling'), True,
                                              mutable)
      elif self.config.detector == 'vild':
        terms, model_state = self.vild_losses(variables, batch, state.step_rng('sampling'), True,
                                              mutable)
      else:
        outputs, model_state = self.model.apply(
            variables, batch['image'], train=True, rngs={'dropout': state.step_rng('dropout')},
            mutable=mutable)
        terms = self.losses(outputs, batch)
      return terms['loss'], (terms, model_state)

    (_, (terms, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(self.tx, grads, model_state=dict(model_state))
    return state, terms

  def outputs(self, state: TrainState, images):
    vocabulary = ((self.text_embeddings, self.class_valid) if self.config.detector == 'vild'
                  else ())
    return self.model.apply({'params': state.params, **state.model_state}, images, *vocabulary,
                            train=False)

  def eval_step(self, state: TrainState, batch):
    mask = batch['mask']
    labels = jnp.where(mask[:, None] > 0, batch['labels'], -1)  # padded examples: no objects
    batch = {**batch, 'labels': labels}
    variables = {'params': state.params, **state.model_state}
    if self.config.detector == 'rcnn':  # a fixed sample, so evaluations compare
      loss = self.rcnn_losses(variables, batch, jax.random.key(0), False)['loss']
    elif self.config.detector == 'vild':
      loss = self.vild_losses(variables, batch, jax.random.key(0), False)['loss']
    else:
      loss = self.losses(self.outputs(state, batch['image']), batch)['loss']
    return {'loss': loss * jnp.sum(mask), 'count': jnp.sum(mask)}

  def detect(self, state: TrainState, images):
    """[N, K, 6] detections: (x0, y0, x1, y1) in pixels, score (0: none), class index; for a
    detector with masks {'detections': those, 'masks': bool [N, K, H, W]}."""
    outputs = self.outputs(state, images)
    size = self._image_shape[:2]
    if self.config.detector in ('rcnn', 'vild'):
      detections = jnp.concatenate([outputs['boxes'], outputs['scores'][..., None],
                                    (outputs['labels'] - 1)[..., None].astype(jnp.float32)], -1)
      if 'masks' not in outputs:
        return detections
      paste = jax.vmap(functools.partial(mask_rcnn.paste_masks, image_size=size))
      return {'detections': detections, 'masks': paste(outputs['masks'], outputs['boxes']) > 0.5}
    if self.config.detector == 'dense':
      return self.model.detections(outputs)
    if self.config.detector == 'ssd':
      return ssd.detections(*outputs, jnp.asarray(self.anchors), size)
    return detr.detections(outputs, size, self.loss_kwargs.get('classification', 'softmax'))

  def evaluation_fns(self):
    return {'detect': self.detect}


if __name__ == '__main__':
  cli.run(Detect)
