"""What a page says about itself: the words, markup and addresses the check classifier looks for.

Data, not logic (``verdicts.py`` decides what they mean): "not found" in the languages of the
sites human-rights reports cite most, the markers of captcha, consent and login walls, the
addresses walls, home pages and error pages live at, and the statuses that settle a verdict.
A new language or a new wall vendor is a line here.
"""

from __future__ import annotations

import re

# "Not found" in the languages of the sites human-rights reports cite most.
# Matched in the title and first heading, or in the whole main text of a short page.
NOT_FOUND_PHRASES = (
    # en
    "page not found", "not found", "page cannot be found", "page can't be found",
    "page could not be found", "page couldn't be found", "page does not exist",
    "page doesn't exist", "page no longer exists", "no longer available",
    "content is no longer available", "this page has been removed", "nothing was found",
    "we couldn't find", "we could not find", "can't find the page", "cannot find the page",
    "error 404", "404 error",
    # fr
    "page introuvable", "page non trouvée", "page inexistante", "cette page n'existe pas",
    "cette page n'existe plus", "erreur 404",
    # de
    "seite nicht gefunden", "seite wurde nicht gefunden", "seite existiert nicht",
    "nicht gefunden", "fehler 404",
    # es / pt / it / ca
    "página no encontrada", "pagina no encontrada", "no se encontró la página",
    "la página no existe", "página não encontrada", "pagina não encontrada",
    "página não existe", "pagina non trovata", "la pagina non esiste", "error 404",
    "pàgina no trobada",
    # nl / pl / cs / tr / id / vi / sw
    "pagina niet gevonden", "niet gevonden", "nie znaleziono strony", "strona nie istnieje",
    "stránka nenalezena", "stránka nebyla nalezena", "sayfa bulunamadı",
    "halaman tidak ditemukan", "không tìm thấy trang", "ukurasa haupatikani",
    # ru / uk / be / sr
    "страница не найдена", "страница не существует", "сторінку не знайдено",
    "сторінка не знайдена", "старонка не знойдзена", "страница није пронађена",
    # ar / fa / ur / he
    "الصفحة غير موجودة", "الصفحة المطلوبة غير موجودة", "لم يتم العثور على الصفحة",
    "صفحه مورد نظر یافت نشد", "صفحه یافت نشد", "صفحہ نہیں ملا", "הדף לא נמצא",
    # hi / bn / my / th / am
    "पृष्ठ नहीं मिला", "पेज नहीं मिला", "পৃষ্ঠা পাওয়া যায়নি", "ไม่พบหน้า", "ገጹ አልተገኘም",
    # zh / ja / ko
    "页面不存在", "找不到页面", "页面未找到", "找不到網頁", "頁面不存在", "找不到该页面",
    "ページが見つかりません", "お探しのページは見つかりません", "페이지를 찾을 수 없습니다",
)
NOT_FOUND_RE = re.compile("|".join(re.escape(p) for p in NOT_FOUND_PHRASES))
# "404" on its own in a title ("404", "404 | Site", "Oops - 404"), never a
# number inside a title ("Benchmark article 404", "Resolution 404/2021").
TITLE_404_RE = re.compile(r"^\W*404\b(?![./])|[-|:–—]\s*404\s*(?:$|[-|:–—])")

CAPTCHA_MARKERS = re.compile(
    r"g-recaptcha|recaptcha/api|h-captcha|hcaptcha\.com|cf-challenge|challenge-platform|"
    r"cf_chl_|cf-turnstile|captcha-delivery\.com|px-captcha|ddos-guard|"
    r"are you a robot|are you a human|verify you are human|verify that you are human|"
    r"checking your browser|just a moment\.\.\.|attention required! \| cloudflare|"
    r"unusual traffic from your computer|<title>[^<]*captcha"
)
CONSENT_MARKERS = re.compile(
    r"before you continue|we value your privacy|cookie consent|consent to cookies|"
    r"accept all cookies|accept cookies to continue|manage your cookie|your privacy choices|"
    r"avant de continuer|bevor sie fortfahren|antes de continuar|prima di continuare|"
    r"consentmanager|onetrust-consent|didomi|quantcast choice|"
    r"<title>[^<]*(?:consent|cookies)"
)
LOGIN_MARKERS = re.compile(
    r"log in to continue|login to continue|sign in to continue|please log in|please sign in|"
    r"you must be logged in|you need to log in|log in to read|sign in to read|"
    r"subscribe to continue reading|subscribers only|members only|"
    r"connectez-vous|anmelden, um|inicia sesión para|iniciar sessão|войдите|"
    r"<title>[^<]*(?:log ?in|sign ?in)\b"
)
# Every marker above contains at least one of these words (tests check that).
WALL_TRIGGERS = (
    "captcha recaptcha hcaptcha challenge chl turnstile ddos robot human browser moment "
    "cloudflare unusual continue continuer continuar continuare privacy consent consentmanager "
    "onetrust didomi quantcast cookie cookies fortfahren log login logged sign signin subscribe "
    "subscribers members connectez anmelden inicia iniciar password войдите"
).split()
TRIGGER_WORDS = frozenset(w.encode() for w in WALL_TRIGGERS)
# bytes.translate table: ASCII letters and every non-ASCII byte (UTF-8 letters)
# stay, everything else becomes a space, so split() yields the page's words.
LETTERS_ONLY = bytes(c if (97 <= c <= 122 or c >= 128) else 32 for c in range(256))
PASSWORD_FIELD = re.compile(r"<input[^>]+type\s*=\s*[\"']?password", re.I)

LOGIN_PATH = re.compile(
    r"(?:^|/)(?:login|log-in|logon|signin|sign-in|sign_in|auth|authenticate|sso|"
    r"session/new|users/sign_in|account/login|accounts/login|oauth2?|cas/login|"
    r"wp-login\.php|paywall|subscribe)(?:[/.?]|$)", re.I)
LOGIN_HOST = re.compile(r"^(?:login|signin|accounts?|auth|sso|id|secure)\.", re.I)
CONSENT_PATH = re.compile(r"(?:^|/)(?:consent|cookie-?consent|cookies?-?wall|privacy-?gate|"
                           r"gdpr|collectconsent)(?:[/.?]|$)", re.I)
CONSENT_HOST = re.compile(r"^(?:consent|guce|cmp|privacy)\.", re.I)
CAPTCHA_PATH = re.compile(r"(?:^|/)(?:captcha|challenge|cdn-cgi/challenge-platform|"
                           r"sorry/index|are-you-human|bot-check)(?:[/.?]|$)", re.I)
HOME_PATH = re.compile(r"^/?(?:(?:index|default|home|start|accueil|inicio)(?:\.\w{2,5})?|"
                        r"[a-z]{2}(?:[-_][a-z]{2})?/?)?$", re.I)
ERROR_PATH = re.compile(r"(?:^|[/_.-])(?:404|410|not-?found|notfound|page-?not-?found|"
                         r"error|errors|missing|gone|removed)(?:[/_.-]|$)", re.I)

BLOCKED_STATUSES = {
    401: ("auth", "the server asks for credentials (401)"),
    402: ("paywall", "the server asks for payment (402)"),
    403: ("forbidden", "the server refuses access (403)"),
    407: ("proxy-auth", "the proxy asks for credentials (407)"),
    429: ("rate-limited", "the server rate-limits us (429)"),
    451: ("legal", "unavailable for legal reasons (451)"),
    999: ("forbidden", "the server refuses automated access (999)"),
}
GONE_STATUSES = {404: "not found (404)", 410: "gone (410)"}
