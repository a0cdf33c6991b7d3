"""The phone line as the hub starts it: ARI, the IVR, the agents' phones, recordings.

The line gets the ``Inbox`` (conversations, contacts, tickets: all the core's) and the
ACD's phone side, never the hub. ``VoiceChannel`` is its ``Channel`` (the composition
root registers it with the hub) and the ACD's ``PhoneSide``: what the hub or the ACD
tells a caller (state, place in line, an offer ringing an agent's phone) becomes an
event of that caller's call task.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import async_sessionmaker

from hotline import office_hours
from hotline.config import PROJECT_ROOT, Settings
from hotline.lang import Lang
from hotline.messages import Outbound
from hotline.ports import Capabilities, Channel, Inbox, PhoneCredentials
from hotline.store.models import ConversationState, utcnow
from voice_ivr import orphans, phones
from voice_ivr.ari import AriClient, AriError, basic_auth
from voice_ivr.asr import AsrEngine, AsrError, PocketsphinxEngine, VoskEngine, recognize
from voice_ivr.calls import CHANNEL, Desk, Speech
from voice_ivr.dialogue import training_phrases
from voice_ivr.ivr import Ivr
from voice_ivr.listen import CallListener
from voice_ivr.recorder import Recorder
from voice_ivr.tts import EspeakTts, TtsError

log = logging.getLogger(__name__)


class VoiceChannel(Channel):
    name = CHANNEL
    # Buttons are read out as "for X, press 1"; one call per agent at a time.
    capabilities = Capabilities(media="realtime", buttons=False, address="phone")

    def __init__(self, ivr: Ivr) -> None:
        self._ivr = ivr

    async def deliver(self, message: Outbound) -> None:
        event = {
            "type": "hl_say",
            "author": message.author.value,
            "text": message.text,
            "buttons": [(b.title, b.payload) for b in message.buttons],
        }
        await self._ivr.notify(message.conversation_id, event)

    async def busy(self, conversation_id: str, busy: bool) -> None:
        if not busy:  # the end of the bot's turn
            await self._ivr.notify(conversation_id, {"type": "hl_turn_end"})

    async def state_changed(self, conversation_id: str, state: ConversationState) -> None:
        await self._ivr.notify(conversation_id, {"type": "hl_state", "state": state.value})

    async def queue_position(self, conversation_id: str, position: int, eta_seconds: int) -> None:
        event = {"type": "hl_position", "position": position, "eta": eta_seconds}
        await self._ivr.notify(conversation_id, event)

    # Call control for staff (hotline.ports.CallControl).
    def call_state(self, conversation_id: str) -> str | None:
        return self._ivr.call_state(conversation_id)

    async def hang_up(self, conversation_id: str, by: str) -> bool:
        return await self._ivr.notify(conversation_id, {"type": "hl_hangup", "by": by})

    async def transfer_out(self, conversation_id: str, number: str, by: str) -> bool:
        event = {"type": "hl_transfer_out", "number": number, "by": by}
        return await self._ivr.notify(conversation_id, event)

    # The ACD's phone side.
    async def offered(self, conversation_id: str, agent_id: str, expires_at: float) -> None:
        event = {"type": "hl_offer", "agent_id": agent_id, "expires_at": expires_at}
        await self._ivr.notify(conversation_id, event)

    async def withdrawn(self, conversation_id: str, agent_id: str) -> None:
        await self._ivr.notify(conversation_id, {"type": "hl_withdrawn", "agent_id": agent_id})


class VoiceLine:
    def __init__(
        self,
        settings: Settings,
        ari: AriClient,
        ivr: Ivr,
        recorder: Recorder,
        etc_dir: Path,
        sessions: async_sessionmaker[Any],
        inbox: Inbox,
    ) -> None:
        self.settings = settings
        self.ari, self.ivr, self.recorder = ari, ivr, recorder
        self.channel = VoiceChannel(ivr)
        self._sessions = sessions
        self._inbox = inbox
        self._etc_dir = etc_dir
        self._phones_lock = asyncio.Lock()

    @classmethod
    async def build(
        cls,
        settings: Settings,
        http: aiohttp.ClientSession,
        sessions: async_sessionmaker[Any],
        inbox: Inbox,
        desk: Desk,
    ) -> VoiceLine:
        """The line, ready to answer: register ``channel`` with the hub, then ``start``.

        ``sessions`` is for the line's own tables (CDRs, recordings) and the agents'
        phones; ``desk`` is the ACD, whose offers ring the phones (``desk.phones``)."""
        ari = AriClient(
            http, settings.ari_url, settings.ari_user, settings.ari_password, settings.ari_app
        )
        root = settings.asterisk_root
        if root is not None and not root.exists():
            root = None  # an external Asterisk: shared paths live in var/ (asterisk/README.md)
        base = root if root is not None else settings.var_dir / "asterisk"
        tts = EspeakTts(base / "var/lib/hotline/prompts")
        try:
            await tts.prepare()
        except TtsError:
            log.exception("text to speech is not working: callers hear only the fallback")
        recorder = Recorder(
            sessions,
            base / "var/spool/asterisk/recording",
            settings.var_dir / "recordings",
            settings.secret_key,
        )
        windows = office_hours.parse(settings.office_hours)
        speech = await _speech(settings, ari, http)
        ivr = Ivr(
            ari,
            sessions,
            inbox,
            tts,
            root=root,
            desk=desk,
            recorder=recorder,
            office_open=lambda: office_hours.is_open(
                windows, settings.timezone, settings.holidays, utcnow()
            ),
            transcriber=_transcriber(settings),
            speech=speech,
            outbound_endpoint=settings.sip_outbound_endpoint,
            phrases=await _grammar_phrases(speech),
        )
        line = cls(settings, ari, ivr, recorder, base / "etc/asterisk", sessions, inbox)
        desk.phones = line.channel
        return line

    async def start(self) -> None:
        """End the calls a stopped hub left, then take calls: connect the IVR to ARI (the
        events socket reconnects by itself) and render the agents' phones."""
        await orphans.end_orphans(self.ari, self._sessions, self._inbox)
        self.ari.listen(self.ivr.on_event, self.ivr.reconcile)
        await self.sync_phones(self._sessions)

    async def sync_phones(self, sessions: async_sessionmaker[Any]) -> None:
        """Render the agents' endpoints; reload PJSIP when they changed."""
        async with self._phones_lock:
            async with sessions() as session:
                text = phones.render(await phones.phones(session))
            if phones.write(self._etc_dir, text):
                try:
                    await self.ari.reload_module("res_pjsip.so")
                except (AriError, aiohttp.ClientError, OSError):
                    log.exception("could not reload PJSIP; agents' phones change at next start")

    async def close(self) -> None:
        await self.ari.close()
        await self.ivr.close()

    # The staff API's view of the line (hotline.ports.PhoneDesk).
    @property
    def sip_server(self) -> str:
        return f"{self.settings.sip_host}:{self.settings.sip_port}"

    def endpoint_of(self, username: str) -> str:
        return phones.endpoint_name(username)

    def new_phone(self, username: str) -> PhoneCredentials:
        endpoint = phones.endpoint_name(username)
        password = phones.new_password()
        return PhoneCredentials(
            endpoint, password, phones.digest_ha1(endpoint, password), phones.REALM
        )

    async def phone_online(self, endpoint: str) -> bool:
        return await self.ari.endpoint_online(endpoint)

    async def phones_changed(self) -> None:
        await self.sync_phones(self._sessions)

    def recording_file(self, file: str | None, recording_id: str) -> tuple[Path, bytes]:
        return self.recorder.path_of_file(file, recording_id), self.recorder.key

    def speech_summary(self) -> str:
        return self.ivr.speech_summary()


async def _speech(settings: Settings, ari: AriClient, http: aiohttp.ClientSession) -> Speech:
    """Menu recognizers: pocketsphinx's English model ships with it; other languages need
    an operator-installed Vosk model (``HOTLINE_VOSK_MODELS``), else callers use keys."""
    engines: dict[str, AsrEngine] = {"en": PocketsphinxEngine()}
    for lang, folder in settings.vosk_models:
        if folder.is_dir():
            engines[lang] = VoskEngine(folder, lang)
    for lang, engine in list(engines.items()):
        try:
            await engine.load()
        except AsrError:
            log.exception("speech recognition unavailable", extra={"lang": lang})
            del engines[lang]
    auth = basic_auth(settings.ari_user, settings.ari_password)
    return Speech(
        engines, lambda: CallListener(ari, http, settings.ari_url, auth, settings.ari_app)
    )


async def _grammar_phrases(speech: Speech) -> dict[str, list[str]]:
    """The bot's training phrases each grammar-only recognizer knows every word of,
    worked out once here rather than on every turn."""
    phrases = training_phrases(PROJECT_ROOT / "nlu" / "data" / "nlu.yml")
    return {
        lang: await asyncio.to_thread(engine.vocabulary, phrases.get(lang, []))
        for lang, engine in speech.engines.items()
        if not engine.dictation
    }


def _transcriber(settings: Settings) -> Any:
    """Vosk, for the languages an operator installed a model for (none ship for zh/en)."""
    engines: dict[str, VoskEngine] = {
        lang: VoskEngine(folder, lang) for lang, folder in settings.vosk_models if folder.is_dir()
    }
    if not engines:
        return None

    async def transcribe(wav: Path, lang: Lang) -> str | None:
        engine = engines.get(lang)
        if engine is None:
            return None
        pcm, rate = await asyncio.to_thread(_read_wav, wav)
        result = await asyncio.to_thread(recognize, engine, pcm, rate, None, lang=lang)
        text = result.text.replace("[unk]", "").strip()
        return text or None

    return transcribe


def _read_wav(path: Path) -> tuple[bytes, int]:
    import wave

    with wave.open(str(path)) as wav:
        return wav.readframes(wav.getnframes()), wav.getframerate()
