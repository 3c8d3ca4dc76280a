"""Sparse autoencoders (sae-lens) on a backend's residual stream, and concepts in SAE-latent space.

docs/methods.md §1.4: encode the same activations a CAV is fitted on with an SAE, fit the CAV over the SAE's
latents, and report each concept's top latents. An SAE comes from a local sae-lens folder
(``cfg.json`` + ``sae_weights.safetensors``; ``biasaudit sae train`` writes one) or, when the hub is
reachable, from a sae-lens pretrained release.

Layer convention. biasaudit's layer 0 is the embedding output and layer l >= 1 the output of decoder
block l (before the final norm). In TransformerLens/sae-lens hook names that is
``blocks.0.hook_resid_pre`` for layer 0 and ``blocks.{l-1}.hook_resid_post`` for layer l
(``blocks.{l}.hook_resid_pre`` names the same activation and is accepted too).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from biasaudit.errors import BiasAuditError

if TYPE_CHECKING:
    from sae_lens import SAE

    from biasaudit.backend.protocol import Backend

_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")
_RESID_PRE = re.compile(r"^blocks\.(\d+)\.hook_resid_pre$")
# Normalisations that live outside the SAE (sae-lens's ActivationScaler) and must be folded in on load.
_EXTERNAL_NORMALISATION = ("expected_average_only_in", "covariance_whitening")
SCALER_FILENAME = "activation_scaler.json"


class SAENotFoundError(BiasAuditError, FileNotFoundError):
    """An SAE source is neither an sae-lens folder nor a known pretrained release."""


class SAEHubUnreachableError(SAENotFoundError):
    """A pretrained SAE release is not in the local cache and the hub cannot be reached."""


class SAEMismatchError(BiasAuditError, ValueError):
    """An SAE does not fit the model or layer it is used with (width, hook, layer)."""


class SAETrainingError(BiasAuditError, ValueError):
    """SAE training cannot start or resume (too little text, a conflicting run in the output folder)."""


# ---------------------------------------------------------------------------------------- layers
def layer_to_hook(layer: int) -> str:
    """sae-lens/TransformerLens hook name of biasaudit layer ``layer`` (0 = embeddings)."""
    if layer < 0:
        raise SAEMismatchError(f"layer must be >= 0, got {layer}")
    return "blocks.0.hook_resid_pre" if layer == 0 else f"blocks.{layer - 1}.hook_resid_post"


def hook_to_layer(hook_name: str) -> int:
    """biasaudit layer read by a residual-stream hook (``blocks.i.hook_resid_post`` -> i + 1)."""
    if m := _RESID_POST.match(hook_name):
        return int(m.group(1)) + 1
    if m := _RESID_PRE.match(hook_name):
        return int(m.group(1))
    raise SAEMismatchError(
        f"the SAE reads hook {hook_name!r}, which is not the residual stream; biasaudit backends expose "
        "residual streams only (blocks.<i>.hook_resid_post / hook_resid_pre)"
    )


# ---------------------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class LoadedSAE:
    """An sae-lens SAE checked against a backend: it reads ``layer`` (biasaudit numbering)."""

    sae: SAE[Any]
    layer: int
    hook_name: str
    d_in: int
    d_sae: int
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # What ``encode`` does to a raw Hugging Face residual stream before the SAE sees it, so that it is the
    # activation the SAE was trained on (``input_transform``): None, or "center" (subtract each vector's
    # mean over d_model, what TransformerLens's ``center_writing_weights`` does to every residual stream).
    input_transform: str | None = None

    @property
    def k(self) -> int | None:
        """Active latents per token of a TopK SAE (None for other architectures)."""
        k = getattr(self.sae.cfg, "k", None)
        return int(k) if k is not None else None


def load_sae(source: str | Path, *, backend: Backend, layer: int | None = None, device: str = "cpu") -> LoadedSAE:
    """Load an SAE from a local sae-lens folder or a pretrained ``"release/sae_id"`` and check it fits.

    Checks: the SAE's input width equals ``backend.hidden_size``; its hook is a residual-stream hook
    of a layer in [0, backend.n_layers]; that layer equals ``layer`` when given (``layer`` is required
    when the SAE records no hook). A folder whose activations were normalised outside the SAE
    (sae-lens's ``activation_scaler.json`` beside ``cfg.json``) has the normalisation folded into its
    weights, so ``encode`` takes raw residual-stream activations.
    """
    from sae_lens import SAE

    spec = str(source)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "cfg.json").is_file():
            raise SAENotFoundError(
                f"{spec!r} is a folder but has no cfg.json; an sae-lens SAE folder holds cfg.json and "
                "sae_weights.safetensors (`biasaudit sae train` writes one)"
            )
        with _transform_handled():
            sae = SAE.load_from_disk(path, device=device)
        _fold_external_normalisation(sae, path)
    else:
        release = _pretrained_release(spec)
        if release is None:
            raise SAENotFoundError(
                f"SAE {spec!r} is not a folder and not a sae-lens pretrained release id ('release/sae_id'); "
                "pass a folder written by `biasaudit sae train` or SAE.save_model"
            )
        sae = _load_pretrained(SAE, release, spec[len(release) + 1 :], device)
    if sae.cfg.normalize_activations in _EXTERNAL_NORMALISATION:
        raise SAEMismatchError(
            f"SAE {spec!r} expects activations normalised with {sae.cfg.normalize_activations!r} but its "
            f"statistics are not known; put sae-lens's {SCALER_FILENAME} beside its cfg.json"
        )
    sae.eval()
    return _check_fits(sae, spec, backend, layer)


def _check_fits(sae: SAE[Any], source: str, backend: Backend, layer: int | None) -> LoadedSAE:
    d_in, d_sae = int(sae.cfg.d_in), int(sae.cfg.d_sae)
    if d_in != backend.hidden_size:
        raise SAEMismatchError(
            f"SAE {source!r} reads {d_in}-dimensional activations but {backend.name} has hidden size "
            f"{backend.hidden_size}; use an SAE trained on this model (`biasaudit sae train`)"
        )
    metadata = sae.cfg.metadata.to_dict()
    hook_name = metadata.get("hook_name")
    if hook_name is None:
        if layer is None:
            raise SAEMismatchError(f"SAE {source!r} does not record its hook; pass layer= to say which it reads")
        hook_name = layer_to_hook(layer)
    sae_layer = hook_to_layer(hook_name)
    if not 0 <= sae_layer <= backend.n_layers:
        raise SAEMismatchError(
            f"SAE {source!r} reads {hook_name} (layer {sae_layer}) but {backend.name} has layers 0 to "
            f"{backend.n_layers}; it was trained on another model"
        )
    if layer is not None and layer != sae_layer:
        raise SAEMismatchError(
            f"SAE {source!r} reads layer {sae_layer} ({hook_name}), not layer {layer}; pass layer={sae_layer} "
            "or an SAE trained on that layer"
        )
    fingerprint = metadata.get("model_fingerprint")
    own = getattr(backend, "fingerprint", None)
    if fingerprint and own and fingerprint != own:
        warnings.warn(
            f"SAE {source!r} was trained on weights with fingerprint {fingerprint} "
            f"({metadata.get('model_name')}), not {backend.name} ({own}); latents may mean nothing here",
            stacklevel=3,
        )
    return LoadedSAE(sae, sae_layer, hook_name, d_in, d_sae, source, metadata, input_transform(metadata, backend))


def input_transform(metadata: dict[str, Any], backend: Backend) -> str | None:
    """How a Hugging Face residual stream differs from the one an SAE release was trained on.

    sae-lens trains on TransformerLens models loaded with ``from_pretrained_no_processing(**kwargs)``
    and records ``kwargs`` as ``model_from_pretrained_kwargs`` (e.g. ``gpt2-small-res-jb``:
    ``center_writing_weights: true``). Of TransformerLens's weight processing, only
    ``center_writing_weights`` changes the residual stream itself: every weight and bias that writes to
    it (W_E, W_pos, W_O, b_O, W_out, b_out) is centred over d_model, so the stream, their sum, is the
    Hugging Face stream minus its mean over d_model. ``fold_ln``, ``fold_value_biases`` and
    ``refactor_factored_attn_matrices`` leave it as it is, and TransformerLens skips the centring for
    RMSNorm models (a LayerNorm-free stream is not invariant to it)."""
    kwargs = metadata.get("model_from_pretrained_kwargs") or {}
    if not kwargs.get("center_writing_weights"):
        return None
    config = getattr(getattr(backend, "model", None), "config", None)
    if config is not None and getattr(config, "rms_norm_eps", None) is not None:
        return None
    return "center"


def _fold_external_normalisation(sae: SAE[Any], folder: Path) -> None:
    """Fold a saved ActivationScaler (scaling factor and/or whitening) into the weights, as sae-lens's
    trainer does at the end of training, so the SAE takes raw activations."""
    if sae.cfg.normalize_activations not in _EXTERNAL_NORMALISATION or not (folder / SCALER_FILENAME).is_file():
        return
    from sae_lens.training.activation_scaler import ActivationScaler

    scaler = ActivationScaler()
    scaler.load(folder / SCALER_FILENAME)
    if scaler.scaling_factor is not None:
        sae.fold_activation_norm_scaling_factor(scaler.scaling_factor)
    if scaler.whitening is not None:
        w = scaler.whitening
        sae.fold_activation_whitening(mean=w.mean, whitening_matrix=w.matrix, unwhitening_matrix=w.inverse_matrix)


def _pretrained_release(spec: str) -> str | None:
    """The sae-lens release a ``"release/sae_id"`` spec starts with (sae ids may contain slashes)."""
    if "/" not in spec:
        return None
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    releases = get_pretrained_saes_directory()
    parts = spec.split("/")
    for cut in range(len(parts) - 1, 0, -1):
        release = "/".join(parts[:cut])
        if release in releases:
            return release
    return None


@contextmanager
def _transform_handled() -> Iterator[None]:
    """Silence sae-lens's advice to load the model with the release's TransformerLens kwargs: ``encode``
    applies what those kwargs do to the residual stream (``input_transform``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*This SAE has non-empty model_from_pretrained_kwargs")
        yield


@contextmanager
def _hub_offline() -> Iterator[None]:
    """Make huggingface_hub read its cache only (fast failure instead of ~30 s of retries)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _load_pretrained(sae_class: Any, release: str, sae_id: str, device: str) -> SAE[Any]:
    from biasaudit.models import hub_reachable

    online = hub_reachable()
    try:
        if online:
            with _transform_handled():
                return sae_class.from_pretrained(release, sae_id, device=device)
        with _hub_offline(), _transform_handled():
            return sae_class.from_pretrained(release, sae_id, device=device)
    except ValueError as exc:  # sae-lens: unknown sae_id in a known release
        raise SAENotFoundError(str(exc)) from exc
    except Exception as exc:
        if online:
            raise
        raise SAEHubUnreachableError(
            f"SAE {release}/{sae_id} is not in the local Hugging Face cache and the hub is unreachable; "
            "download it where the hub is reachable, or train one here with `biasaudit sae train`"
        ) from exc


# ---------------------------------------------------------------------------------------- encoding
def encode(loaded: LoadedSAE, activations: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
    """SAE latents of raw residual-stream activations: (n, d_in) -> (n, d_sae) float32, batched, no grad.

    Any normalisation the SAE expects is either inside ``sae.encode`` (``layer_norm``,
    ``constant_norm_rescale``) or was folded into its weights by ``load_sae``; the residual-stream
    transformation a release was trained with (``LoadedSAE.input_transform``) is applied here. Centring
    commutes with pooling over tokens, so pooled activations get the same input as per-token ones.
    """
    import torch

    x = np.asarray(activations)
    if x.ndim != 2 or x.shape[1] != loaded.d_in:
        raise SAEMismatchError(f"activations must be (n, {loaded.d_in}), got {x.shape}")
    if loaded.input_transform == "center":
        x = x - x.mean(axis=1, keepdims=True)
    out = np.empty((len(x), loaded.d_sae), dtype=np.float32)
    sae = loaded.sae
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32))
            out[start : start + len(chunk)] = sae.encode(chunk.to(sae.device, sae.dtype)).float().cpu().numpy()
    return out


# ---------------------------------------------------------------------------------------- concepts
@dataclass(frozen=True)
class LatentExample:
    """A text that activates a latent: ``source`` says which side it came from."""

    text: str
    source: Literal["concept", "generic"]
    activation: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ConceptLatent:
    """One latent's association with a concept.

    ``mean_difference`` = mean activation on concept texts − on generic texts (the ranking key);
    ``fire_rate_*`` = fraction of texts where the latent is non-zero; ``cav_weight`` = the latent's
    component in the unit CAV fitted over latents (None when no CAV was fitted).
    """

    latent: int
    mean_concept: float
    mean_generic: float
    mean_difference: float
    fire_rate_concept: float
    fire_rate_generic: float
    cav_weight: float | None
    top_examples: list[LatentExample]

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "top_examples": [e.to_dict() for e in self.top_examples]}


@dataclass(frozen=True)
class SAEConceptResult:
    """A concept in SAE space: CAV quality over latents and the concept's top latents."""

    concept: str
    layer: int
    hook_name: str
    sae_source: str
    d_sae: int
    n_concept: int
    n_generic: int
    cav_accuracy: float | None
    cav_accuracy_std: float | None
    cav_stability: float | None
    top_latents: list[ConceptLatent]
    cav_top_latents: list[int]
    token_level_examples: bool

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "top_latents": [t.to_dict() for t in self.top_latents]}


class SAEConceptAnalysis:
    """A concept's CAV over SAE latents, and its top latents with their top-activating texts.

    Top latents are ranked by the **mean latent activation difference, concept − generic** (only
    latents with a positive difference are listed): it reads directly as "fires more on the concept",
    whereas a logistic-regression weight can be large for a latent that merely cancels another. Each
    listed latent also carries its CAV weight, and ``cav_top_latents`` lists the latents with the
    largest positive CAV weights for comparison.

    Top examples of a latent are the given texts (concept and generic together) with the largest
    activation of that latent: on the pooled activation passed to ``fit``, or, when ``fit`` gets a
    ``backend`` and ``token_level=True``, the maximum over the text's tokens (skipping position 0).

    Parameters
    ----------
    sae: a ``LoadedSAE`` (``load_sae``).  n_top_latents, n_top_examples: how many to report.
    fit_cav: also fit a ``ConceptActivationVector`` over the latents (C, n_folds, n_repeats,
    random_state are its hyper-parameters).  token_level: see above.  batch_size: rows per SAE call.

    Attributes (after ``fit``)
    --------------------------
    concept_latents_ (n_c, d_sae), generic_latents_ (n_g, d_sae), mean_difference_ (d_sae,),
    cav_ (fitted ConceptActivationVector or None), top_latents_ (list of ConceptLatent), result_.
    """

    def __init__(
        self,
        sae: LoadedSAE,
        *,
        n_top_latents: int = 10,
        n_top_examples: int = 5,
        fit_cav: bool = True,
        token_level: bool = True,
        C: float = 0.1,
        n_folds: int = 5,
        n_repeats: int = 10,
        random_state: int = 0,
        batch_size: int = 4096,
    ) -> None:
        self.sae = sae
        self.n_top_latents = n_top_latents
        self.n_top_examples = n_top_examples
        self.fit_cav = fit_cav
        self.token_level = token_level
        self.C = C
        self.n_folds = n_folds
        self.n_repeats = n_repeats
        self.random_state = random_state
        self.batch_size = batch_size

    def fit(
        self,
        concept_activations: np.ndarray,
        generic_activations: np.ndarray,
        concept_texts: Sequence[str],
        generic_texts: Sequence[str],
        *,
        concept: str = "concept",
        backend: Backend | None = None,
    ) -> SAEConceptAnalysis:
        """Encode (n_c, d) concept and (n_g, d) generic activations of the given texts; returns self."""
        if len(concept_texts) != len(concept_activations) or len(generic_texts) != len(generic_activations):
            raise SAEMismatchError(
                f"need one text per activation row: {len(concept_texts)} texts for {len(concept_activations)} "
                f"concept rows, {len(generic_texts)} for {len(generic_activations)} generic rows"
            )
        if len(concept_texts) == 0 or len(generic_texts) == 0:
            raise SAEMismatchError("need at least one concept and one generic example")
        self.concept_latents_ = encode(self.sae, concept_activations, batch_size=self.batch_size)
        self.generic_latents_ = encode(self.sae, generic_activations, batch_size=self.batch_size)
        z_c, z_g = self.concept_latents_, self.generic_latents_
        self.mean_difference_ = z_c.mean(axis=0) - z_g.mean(axis=0)
        self.cav_ = None
        if self.fit_cav:
            from biasaudit.concepts.cav import ConceptActivationVector

            self.cav_ = ConceptActivationVector(
                C=self.C, n_folds=self.n_folds, n_repeats=self.n_repeats, random_state=self.random_state
            ).fit(z_c, z_g)
        order = np.argsort(-self.mean_difference_, kind="stable")
        top = [int(j) for j in order[: self.n_top_latents] if self.mean_difference_[j] > 0]
        texts = [*concept_texts, *generic_texts]
        concept_side: Literal["concept", "generic"] = "concept"
        generic_side: Literal["concept", "generic"] = "generic"
        sources = [concept_side] * len(concept_texts) + [generic_side] * len(generic_texts)
        token_level = self.token_level and backend is not None and bool(top)
        if token_level:
            assert backend is not None
            per_text = self._token_max(backend, texts, top)
        else:
            per_text = np.concatenate([z_c[:, top], z_g[:, top]])
        self.top_latents_ = [self._summary(j, per_text[:, col], texts, sources) for col, j in enumerate(top)]
        cav_top: list[int] = []
        if self.cav_ is not None:
            w = self.cav_.cav_
            cav_top = [int(j) for j in np.argsort(-w, kind="stable")[: self.n_top_latents] if w[j] > 0]
        self.result_ = SAEConceptResult(
            concept=concept,
            layer=self.sae.layer,
            hook_name=self.sae.hook_name,
            sae_source=self.sae.source,
            d_sae=self.sae.d_sae,
            n_concept=len(z_c),
            n_generic=len(z_g),
            cav_accuracy=None if self.cav_ is None else float(self.cav_.accuracy_),
            cav_accuracy_std=None if self.cav_ is None else float(self.cav_.accuracy_std_),
            cav_stability=None if self.cav_ is None else float(self.cav_.stability_),
            top_latents=self.top_latents_,
            cav_top_latents=cav_top,
            token_level_examples=token_level,
        )
        return self

    def _summary(
        self, j: int, values: np.ndarray, texts: list[str], sources: list[Literal["concept", "generic"]]
    ) -> ConceptLatent:
        z_c, z_g = self.concept_latents_[:, j], self.generic_latents_[:, j]
        best = [int(i) for i in np.argsort(-values, kind="stable")[: self.n_top_examples] if values[i] > 0]
        return ConceptLatent(
            latent=j,
            mean_concept=float(z_c.mean()),
            mean_generic=float(z_g.mean()),
            mean_difference=float(self.mean_difference_[j]),
            fire_rate_concept=float((z_c > 0).mean()),
            fire_rate_generic=float((z_g > 0).mean()),
            cav_weight=None if self.cav_ is None else float(self.cav_.cav_[j]),
            top_examples=[LatentExample(texts[i], sources[i], float(values[i])) for i in best],
        )

    def _token_max(self, backend: Backend, texts: list[str], latents: list[int]) -> np.ndarray:
        """Per text, the largest activation of each of ``latents`` over its tokens: (n_texts, len(latents)).

        One forward pass up to the SAE's layer; only the requested latent columns are kept, so memory
        stays (n_tokens_in_batch, d_sae) at most.
        """
        out = np.zeros((len(texts), len(latents)), dtype=np.float32)
        for states in backend.iter_token_states(texts, [self.sae.layer], skip_positions=1):
            z = encode(self.sae, states.values[self.sae.layer], batch_size=self.batch_size)[:, latents]
            np.maximum.at(out, states.text_index, z)
        return out
