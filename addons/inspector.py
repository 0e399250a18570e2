"""Inspector: runs the engine's pipeline on each in-scope request and WebSocket message.

Its findings go into the flow's state; the redactor applies its decisions."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http

from shopguard import paths
from shopguard.adapt import header_pairs, plain_request
from shopguard.engine import pipeline
from shopguard.engine.detect import DEFAULT_MIN_CONFIDENCE, Detector
from shopguard.engine.findings import Finding
from shopguard.engine.known_values import KnownMatcher, Profile, load_profile
from shopguard.engine.located import ConfigErrors
from shopguard.runtime import Runtime, guarded
from shopguard.state import FlowState

logger = logging.getLogger(__name__)


NO_PROFILE = (
    "no profile: findings come from patterns and trackers only; create it to find your own values"
)
GONE = "the file is gone (deleted or moved); save it empty to clear the profile"


def profile_warning(path: Path) -> str | None:
    """A warning when others than the owner may read the profile."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (
            f"{path} can be read by other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )
    return None


class Inspector:
    """Runs the pipeline on every in-scope request and WebSocket message; the redactor applies
    what it decided."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.profile_path: Path | None = None
        self.profile_stamp: tuple[float, int] | None = None
        rt.watchers.append(self.reload_if_changed)

    def load(self, loader: Any) -> None:
        loader.add_option(
            "shopguard_profile",
            str,
            "",
            "File of your own known values (name, phone, e-mail…); empty: the `profile` "
            "setting, else profile.yaml in the platform config directory.",
        )
        loader.add_option(
            "shopguard_min_confidence",
            str,
            str(DEFAULT_MIN_CONFIDENCE),
            "Report findings at or above this confidence (0 to 1).",
        )

    def configure(self, updated: set[str]) -> None:
        relevant = {"shopguard_profile", "shopguard_min_confidence", "shopguard_config"}
        if not updated & relevant or self.rt.config is None:
            return
        try:
            minimum = float(ctx.options.shopguard_min_confidence)
        except ValueError:
            minimum = -1.0
        if not 0 <= minimum <= 1:
            raise exceptions.OptionsError(
                "shopguard_min_confidence: expected a number from 0 to 1, "
                f"got {ctx.options.shopguard_min_confidence!r}"
            )
        path = self._profile_path()
        if ctx.options.shopguard_profile and not path.is_file():
            raise exceptions.OptionsError(f"shopguard profile not found: {path}")
        try:
            profile = self._read_profile(path)
        except ConfigErrors as exc:
            raise exceptions.OptionsError("invalid shopguard profile:\n" + str(exc)) from exc
        self._install(profile, minimum)

    def _profile_path(self) -> Path:
        if ctx.options.shopguard_profile:
            return Path(ctx.options.shopguard_profile).expanduser()
        assert self.rt.config is not None
        return self.rt.config.settings.profile or paths.default_profile_path()

    def _read_profile(self, path: Path) -> Profile | None:
        self.profile_path = path
        self.profile_stamp = _stamp(path)
        if self.profile_stamp is None:
            return None  # no profile: pattern and tracker detection only
        if warning := profile_warning(path):
            logger.warning(warning)
            self.rt.emit("profile_warning", path=str(path), warning=warning)
        return load_profile(path)

    def _install(self, profile: Profile | None, minimum: float) -> None:
        assert self.rt.config is not None
        self.rt.detector = Detector(
            secret=paths.install_secret(),
            matcher=KnownMatcher(profile) if profile else None,
            region=profile.default_region if profile else "CN",
            min_confidence=minimum,
            keep_values=self.rt.config.settings.log.values == "raw",
        )
        if profile is None:
            self.rt.emit("profile_missing", path=str(self.profile_path), note=NO_PROFILE)
            return
        self.rt.emit(
            "profile_loaded",
            path=str(self.profile_path),
            values=len(profile.values),
            pool=self.rt.detector.matcher.pool_size if self.rt.detector.matcher else 0,
        )

    def reload_if_changed(self) -> None:
        """Pick up an edited profile; an invalid edit keeps the last good one, and so does a
        file deleted or moved (editors and sync tools replace files): saved empty, it clears."""
        if self.profile_path is None or self.rt.detector is None:
            return
        stamp = _stamp(self.profile_path)
        if stamp == self.profile_stamp:
            return
        if stamp is None and self.rt.detector.matcher is not None:
            self.profile_stamp = None  # (once: its return is picked up as an edit)
            self._reject([f"{self.profile_path}: {GONE}"])
            return
        try:
            profile = self._read_profile(self.profile_path)
        except ConfigErrors as exc:
            self._reject([str(e) for e in exc.errors])
            return
        self._install(profile, self.rt.detector.min_confidence)

    def _reject(self, errors: list[str]) -> None:
        self.rt.emit("profile_rejected", path=str(self.profile_path), errors=errors)
        logger.warning("shopguard keeps the last good profile:\n%s", "\n".join(errors))

    @guarded
    def request(self, flow: http.HTTPFlow) -> None:
        state = self.rt.state(flow)
        context = self.rt.context()
        if state is None or context is None:
            return  # a request answered locally (blocked) is still inspected: it says what it held
        routed = self.rt.routed(state)
        if routed is None:
            return
        request = plain_request(flow, context.config.settings.body_cap, state["host"])
        blocked = any(a["action"] == "block" for a in state["actions"])
        result = pipeline.process(context, request, routed, blocked=blocked)
        self.rt.result = flow.id, result  # for the redactor's request hook, next
        state["inspection"] = result.inspection
        if result.notes:
            state["inspection_notes"] = list(result.notes)
        if result.masked_names:
            state["masked_names"] = result.masked_names
        _merge(state, result.findings)

    @guarded
    def response(self, flow: http.HTTPFlow) -> None:
        state = self.rt.state(flow)
        context = self.rt.context()
        if state is None or context is None or flow.response is None:
            return
        if "set-cookie" not in flow.response.headers:
            return
        routed = self.rt.routed(state)
        if routed is not None:  # only its Set-Cookie: tracking identifiers
            found = pipeline.response_cookies(context, routed, header_pairs(flow.response.headers))
            _merge(state, found)

    @guarded
    def websocket_message(self, flow: http.HTTPFlow) -> None:
        state = self.rt.state(flow)
        context = self.rt.context()
        if state is None or flow.websocket is None or context is None:
            return
        routed = self.rt.routed(state)
        if routed is None:
            return
        message = flow.websocket.messages[-1]
        result = pipeline.message(
            context, routed, flow.request.url, message.content, message.from_client
        )
        self.rt.result = flow.id, result
        # this message's summary (replacing an earlier one's): the redactor may act on it, the
        # recorder writes it as a ws_message line if it holds findings or actions
        state["ws"] = {
            "direction": "sent" if message.from_client else "received",
            "inspection": result.inspection,
            "findings": [f.to_dict() for f in result.findings],
            "actions": [],
        }


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime, info.st_size


def _merge(state: FlowState, found: list[Finding]) -> None:
    """One finding per (category, location) per flow."""
    have = {(f["category"], f["location"]) for f in state["findings"]}
    for finding in found:
        slot = (finding.category, finding.location)
        if slot not in have:
            have.add(slot)
            state["findings"].append(finding.to_dict())
