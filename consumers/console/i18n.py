"""The console's words in English and Spanish. A missing translation falls back to English; a missing
key is a bug (a test renders every page in both languages)."""

from __future__ import annotations

LANGUAGES = ("en", "es")
DEFAULT_LANGUAGE = "en"

_EN: dict[str, str] = {
    "title": "onceonly console",
    "skip": "Skip to the content",
    "signed_in_as": "Signed in as",
    "signed_in_resident": "Signed in with your electronic identity",
    "sign_out": "Sign out",
    "language": "Language",
    "home": "Home",
    "provider_page": "Who used my data",
    "consumer_page": "My requests",
    "oversight_page": "Trace search",
    "resident_page": "Resident report",
    "ledger_page": "Ledger integrity",
    "governance_log": "Governance log",
    "agreements": "Agreements",
    "sign_in": "Sign in",
    "sign_in_certificate": "With your client certificate",
    "sign_in_certificate_help": (
        "Your browser presents the certificate your organisation was issued by the platform's CA. "
        "None was presented on this connection."
    ),
    "sign_in_token": "With a token from your organisation's identity provider",
    "token": "Token",
    "token_help": "Paste the signed token (JWT) your identity provider issued to you.",
    "who_decides": (
        "What you see is decided by the broker from your certificate or token, never by this page."
    ),
    "forbidden": "This page is not for your role",
    "forbidden_help": "Your role ({role}) may not see this page. The attempt was logged.",
    "not_found": "Not found",
    "error": "Something went wrong",
    "broker_unavailable": "The broker cannot be reached right now; try again shortly.",
    "period": "Period",
    "since": "From (date)",
    "until": "Until (date, inclusive)",
    "show": "Show",
    "consumer": "Consumer",
    "procedure": "Procedure",
    "purpose": "Purpose",
    "legal_basis": "Legal basis",
    "certificate_type": "Certificate type",
    "provider": "Provider",
    "outcome": "Outcome",
    "count": "Count",
    "requests": "Requests",
    "checks": "Checks",
    "latency": "Latency of my answers (ms)",
    "p50": "p50",
    "p90": "p90",
    "p99": "p99",
    "by_day": "By day and outcome",
    "day": "Day",
    "errors_timeouts": "Timeouts and errors",
    "none": "Nothing in this period.",
    "facts_note": "Counted from {hours} hours of aggregates and {n} traces of the hours not yet aggregated.",
    "purpose_note": "Purposes: from the {n} most recent traces.",
    "agreement": "Agreement",
    "version": "Version",
    "state": "State",
    "waiting_for": "Waiting for",
    "pending_approvals": "Waiting for my decision",
    "approve": "Approve",
    "veto": "Veto",
    "reason": "Reason",
    "reason_help": "Required to veto: the consumer and oversight read it.",
    "done": "Done.",
    "denials": "My denials, by reason",
    "what_to_do": "What to do",
    "trace": "Trace",
    "when": "When",
    "officer": "Officer",
    "decision": "Decision",
    "filter": "Filter",
    "any": "any",
    "next_page": "Next page",
    "resident_lookup": "Look up a resident",
    "document_type": "Document type",
    "document_number": "Document number",
    "case_file": "Case file",
    "report_purpose": "Why you look (recorded in the ledger)",
    "report_traced": "This lookup was itself recorded in the ledger as trace {trace}.",
    "hidden_from_resident": "Hidden from the resident",
    "chain": "Chain",
    "head_seq": "Last position",
    "head_hash": "Head hash",
    "witnessed_heads": "Signed chain heads kept outside the database (the witness)",
    "ledger_help": (
        "An auditor checks these heads against the database with `onceonly ledger verify`; a head here "
        "that the database does not reach means records were removed."
    ),
    "actor": "By",
    "action": "Action",
    "subject": "Subject",
    "role_pages": "Your pages",
    "propose": "Propose an agreement",
    "propose_help": (
        "The providers whose data it covers approve or veto it (and the governing body its master "
        "agreement names endorses it); the broker checks it against the master agreement's clauses."
    ),
    "proposed": "Proposed:",
    "master_agreement": "Master agreement",
    "procedures": "Procedures",
    "procedures_help": "Procedure codes, separated by commas.",
    "laws": "Laws it may cite",
    "laws_help": "One per line (required when LAW is allowed).",
    "unit": "Responsible unit",
    "accountable": "Accountable (a named role)",
    "dpo": "Data-protection officer (consulted)",
    "description": "Description",
    "open_data": "Open data",
    "open_data_intro": (
        "How the platform is used, by day: no resident appears here, and any figure counted fewer than "
        "{minimum} times is withheld."
    ),
    "impact": "Certificates residents did not have to bring",
    "impact_help": (
        "Verified checks by month, and the hours they saved residents (minutes per certificate type, "
        "configurable)."
    ),
    "impact_chart": "Verified checks by month",
    "month": "Month",
    "not_brought": "Certificates not brought",
    "hours_saved": "Hours saved (estimated)",
    "usage_by_day": "Usage by day",
    "advice_PROCEDURE_NOT_AUTHORISED": "No agreement covers this procedure: propose one.",
    "advice_CERTIFICATE_TYPE_NOT_COVERED": (
        "Your agreement does not cover this certificate type: propose a new version that does."
    ),
    "advice_LEGAL_BASIS_NOT_ALLOWED": "Cite a legal basis the agreement and the certificate type allow.",
    "advice_LEGAL_REFERENCE_NOT_IN_AGREEMENT": "Cite one of the laws your agreement lists, or add the law.",
    "advice_CONSENT_REQUIRED": "This agreement needs the resident's consent: record it and cite it.",
    "advice_AGREEMENT_NOT_IN_FORCE": "The agreement is suspended, expired or not yet in force.",
    "advice_PROVIDER_VETO": "The provider vetoed the agreement: read its reason and talk to it.",
    "advice_SELF_QUERY_FORBIDDEN": "Officers may not look themselves up.",
    "advice_OFFICER_NOT_AUTHENTICATED": "Sign officers in with your identity provider's tokens.",
    "advice_OFFICER_DOCUMENT_REQUIRED": "Send the officer's own identity document with the request.",
    "advice_QUOTA_EXCEEDED": "The master agreement's quota is used up: wait for the window to end.",
    "advice_UNKNOWN_CONSUMER": "Your organisation is not registered as a consumer: ask the operator.",
    "audit_page": "Audit sampling",
    "audit_help": (
        "Draw a random sample of requests; each becomes a task for the consumer that made it, to "
        "justify by a deadline. The same seed over the same period draws the same sample. Every "
        "draw and answer is written to the governance log."
    ),
    "draw_sample": "Draw a sample",
    "every_consumer": "Every consumer",
    "sample_size": "How many requests",
    "seed": "Seed (optional)",
    "seed_help": "Give one to repeat a draw; empty: the broker picks one.",
    "days_to_answer": "Days to answer",
    "draw": "Draw",
    "samples": "Samples drawn",
    "sample": "Sample",
    "audit_tasks": "Justification tasks",
    "deadline": "Deadline",
    "justification": "Justification",
    "late": "late",
    "audit_tasks_page": "Audit tasks",
    "audit_tasks_help": (
        "An oversight body sampled these requests of your organisation: say why each was needed "
        "before its deadline. Your answer is written to the governance log."
    ),
    "justified_thanks": "Your justification was recorded.",
    "trace_purged": "Request no longer in the ledger (retention)",
    "proof": "Proof of this request",
    "justification_help": "Why the request was needed (up to 2,000 characters; never a document number).",
    "justify": "Send justification",
    "no_tasks": "No audit task for your organisation.",
    "proof_title": "Proof of a verification request",
    "verification_code": "Verification code",
    "record_hash": "Record hash",
    "sealed": "covered by a signed checkpoint",
    "attestations": "Attestations given (digests)",
    "verify_help": "Anyone can check this code against the platform's ledger at",
    "download_pdf": "Download as PDF",
    "verify_page": "Verify a proof",
    "verify_intro": (
        "Enter the verification code printed on a proof. The ledger says whether a request with "
        "that code was recorded, and what it was, without the resident or any attested value."
    ),
    "check": "Check",
    "code_matches": "This code matches a request recorded in the ledger, unaltered.",
    "code_tampered": (
        "This code names a record of the ledger, but the record no longer matches its hash chain: "
        "it was altered."
    ),
    "verify_no_values": "No resident and no attested value is shown here.",
    "code_unknown": "No request with this code is recorded in the ledger.",
    "report_page": "Monthly report",
    "organisation": "Organisation",
    "field_month": "Month",
    "field_org": "Organisation",
    "report_error_month": "must be a month YYYY-MM",
    "report_error_org": "is not an organisation code",
    "download_csv": "Download as CSV",
    "as_consumer": "As a consumer: requests made",
    "as_provider": "As a provider: checks served",
    "checks_served": "Checks served, by consumer, certificate type and outcome",
    "requests_by_day": "Requests by day",
    "latest_requests": "Latest requests",
    "field_consumer": "Consumer",
    "field_since": "From",
    "field_until": "Until",
    "field_size": "How many requests",
    "field_seed": "Seed",
    "field_days": "Days to answer",
    "field_form": "Sample",
    "my_log_page": "My access log",
    "my_log_intro": (
        "Which administrations consulted your data through the platform, when, why and under which "
        "legal basis. Each time you open this page it is recorded too."
    ),
    "my_log_error": "choose yourself or a person you represent",
    "whose_log": "Whose access log",
    "myself": "Myself",
    "represented": "A person I represent",
    "retention_note": "Entries are kept {days} days; older ones are removed.",
    "withheld_note": (
        "Some accesses may be withheld from this list by law (for example, during an "
        "investigation); this page does not say whether any are."
    ),
    "officer_authenticated": "Officer authenticated",
    "yes": "yes",
    "no": "no",
    "no_entries": "No administration has consulted your data through the platform.",
    "sign_in_resident": (
        "Residents: sign in with the token of your electronic identity (eID) provider; you will see"
        " who consulted your data."
    ),
    "advice_NOT_REPRESENTED": "A resident asked for the log of someone they do not represent.",
}

_ES: dict[str, str] = {
    "title": "consola onceonly",
    "skip": "Ir al contenido",
    "signed_in_resident": "Sesión iniciada con su identidad electrónica",
    "signed_in_as": "Sesión iniciada como",
    "sign_out": "Cerrar sesión",
    "language": "Idioma",
    "home": "Inicio",
    "provider_page": "Quién usó mis datos",
    "consumer_page": "Mis peticiones",
    "oversight_page": "Búsqueda de trazas",
    "resident_page": "Informe de una persona",
    "ledger_page": "Integridad del registro",
    "governance_log": "Registro de gobernanza",
    "agreements": "Convenios",
    "sign_in": "Iniciar sesión",
    "sign_in_certificate": "Con su certificado de cliente",
    "sign_in_certificate_help": (
        "Su navegador presenta el certificado que la autoridad de certificación de la plataforma emitió "
        "a su organización. En esta conexión no se presentó ninguno."
    ),
    "sign_in_token": "Con un token del proveedor de identidad de su organización",
    "token": "Token",
    "token_help": "Pegue el token firmado (JWT) que le emitió su proveedor de identidad.",
    "who_decides": (
        "Lo que ve lo decide el intermediador a partir de su certificado o token, nunca esta página."
    ),
    "forbidden": "Esta página no corresponde a su perfil",
    "forbidden_help": "Su perfil ({role}) no puede ver esta página. El intento ha quedado registrado.",
    "not_found": "No encontrado",
    "error": "Algo ha fallado",
    "broker_unavailable": "No se puede contactar con el intermediador; inténtelo de nuevo en breve.",
    "period": "Periodo",
    "since": "Desde (fecha)",
    "until": "Hasta (fecha, incluida)",
    "show": "Mostrar",
    "consumer": "Cesionario",
    "procedure": "Procedimiento",
    "purpose": "Finalidad",
    "legal_basis": "Base jurídica",
    "certificate_type": "Tipo de certificado",
    "provider": "Emisor",
    "outcome": "Resultado",
    "count": "Número",
    "requests": "Peticiones",
    "checks": "Comprobaciones",
    "latency": "Latencia de mis respuestas (ms)",
    "p50": "p50",
    "p90": "p90",
    "p99": "p99",
    "by_day": "Por día y resultado",
    "day": "Día",
    "errors_timeouts": "Tiempos agotados y errores",
    "none": "Nada en este periodo.",
    "facts_note": "Contado con {hours} horas de agregados y {n} trazas de las horas aún sin agregar.",
    "purpose_note": "Finalidades: de las {n} trazas más recientes.",
    "agreement": "Convenio",
    "version": "Versión",
    "state": "Estado",
    "waiting_for": "Pendiente de",
    "pending_approvals": "Pendientes de mi decisión",
    "approve": "Aprobar",
    "veto": "Vetar",
    "reason": "Motivo",
    "reason_help": "Obligatorio para vetar: lo leen el cesionario y la autoridad de control.",
    "done": "Hecho.",
    "denials": "Mis denegaciones, por motivo",
    "what_to_do": "Qué hacer",
    "trace": "Traza",
    "when": "Cuándo",
    "officer": "Funcionario",
    "decision": "Decisión",
    "filter": "Filtrar",
    "any": "cualquiera",
    "next_page": "Página siguiente",
    "resident_lookup": "Consultar a una persona",
    "document_type": "Tipo de documento",
    "document_number": "Número de documento",
    "case_file": "Expediente",
    "report_purpose": "Motivo de la consulta (queda registrado)",
    "report_traced": "Esta consulta ha quedado registrada en el registro como la traza {trace}.",
    "hidden_from_resident": "Oculto a la persona",
    "chain": "Cadena",
    "head_seq": "Última posición",
    "head_hash": "Hash de cabecera",
    "witnessed_heads": "Cabeceras firmadas guardadas fuera de la base de datos (el testigo)",
    "ledger_help": (
        "Un auditor contrasta estas cabeceras con la base de datos con `onceonly ledger verify`; una "
        "cabecera que la base de datos no alcanza significa que se borraron registros."
    ),
    "actor": "Por",
    "action": "Acción",
    "subject": "Objeto",
    "role_pages": "Sus páginas",
    "propose": "Proponer un convenio",
    "propose_help": (
        "Lo aprueban o vetan los emisores de los datos que cubre (y lo refrenda el órgano de gobierno "
        "que nombre el convenio marco); el intermediador lo contrasta con las cláusulas del convenio marco."
    ),
    "proposed": "Propuesto:",
    "master_agreement": "Convenio marco",
    "procedures": "Procedimientos",
    "procedures_help": "Códigos de procedimiento, separados por comas.",
    "laws": "Leyes que puede citar",
    "laws_help": "Una por línea (obligatorio si se permite la base LAW).",
    "unit": "Unidad responsable",
    "accountable": "Responsable (un cargo)",
    "dpo": "Delegado de protección de datos (consultado)",
    "description": "Descripción",
    "open_data": "Datos abiertos",
    "open_data_intro": (
        "Cómo se usa la plataforma, por día: aquí no aparece ninguna persona, y se omite toda cifra "
        "contada menos de {minimum} veces."
    ),
    "impact": "Certificados que las personas no tuvieron que aportar",
    "impact_help": (
        "Comprobaciones verificadas por mes, y las horas que ahorraron (minutos por tipo de "
        "certificado, configurable)."
    ),
    "impact_chart": "Comprobaciones verificadas por mes",
    "month": "Mes",
    "not_brought": "Certificados no aportados",
    "hours_saved": "Horas ahorradas (estimación)",
    "usage_by_day": "Uso por día",
    "advice_PROCEDURE_NOT_AUTHORISED": "Ningún convenio cubre este procedimiento: proponga uno.",
    "advice_CERTIFICATE_TYPE_NOT_COVERED": (
        "Su convenio no cubre este tipo de certificado: proponga una nueva versión que lo cubra."
    ),
    "advice_LEGAL_BASIS_NOT_ALLOWED": "Cite una base jurídica que permitan el convenio y el certificado.",
    "advice_LEGAL_REFERENCE_NOT_IN_AGREEMENT": "Cite una de las leyes de su convenio, o añada la ley.",
    "advice_CONSENT_REQUIRED": "Este convenio exige el consentimiento de la persona: regístrelo y cítelo.",
    "advice_AGREEMENT_NOT_IN_FORCE": "El convenio está suspendido, vencido o aún no en vigor.",
    "advice_PROVIDER_VETO": "El emisor vetó el convenio: lea su motivo y hable con él.",
    "advice_SELF_QUERY_FORBIDDEN": "Un funcionario no puede consultarse a sí mismo.",
    "advice_OFFICER_NOT_AUTHENTICATED": (
        "Autentique a los funcionarios con tokens de su proveedor de identidad."
    ),
    "advice_OFFICER_DOCUMENT_REQUIRED": "Envíe el documento de identidad del funcionario con la petición.",
    "advice_QUOTA_EXCEEDED": "La cuota del convenio marco se ha agotado: espere a que termine el periodo.",
    "advice_UNKNOWN_CONSUMER": "Su organización no está registrada como cesionaria: pídalo al operador.",
    "audit_page": "Muestreo de auditoría",
    "audit_help": (
        "Extraiga una muestra aleatoria de peticiones; cada una pasa a ser una tarea para el "
        "cesionario que la hizo, que debe justificarla antes de un plazo. La misma semilla sobre el"
        " mismo periodo extrae la misma muestra. Cada extracción y respuesta queda en el registro "
        "de gobierno."
    ),
    "draw_sample": "Extraer una muestra",
    "every_consumer": "Todos los cesionarios",
    "sample_size": "Cuántas peticiones",
    "seed": "Semilla (opcional)",
    "seed_help": "Indique una para repetir una extracción; vacía: la elige el intermediador.",
    "days_to_answer": "Días para responder",
    "draw": "Extraer",
    "samples": "Muestras extraídas",
    "sample": "Muestra",
    "audit_tasks": "Tareas de justificación",
    "deadline": "Plazo",
    "justification": "Justificación",
    "late": "fuera de plazo",
    "audit_tasks_page": "Tareas de auditoría",
    "audit_tasks_help": (
        "Un órgano de control ha seleccionado estas peticiones de su organización: explique por qué"
        " fue necesaria cada una antes de su plazo. Su respuesta queda en el registro de gobierno."
    ),
    "justified_thanks": "Su justificación ha quedado registrada.",
    "trace_purged": "La petición ya no está en el registro (conservación)",
    "proof": "Justificante de esta petición",
    "justification_help": (
        "Por qué fue necesaria la petición (hasta 2.000 caracteres; nunca un número de documento)."
    ),
    "justify": "Enviar justificación",
    "no_tasks": "Su organización no tiene tareas de auditoría.",
    "proof_title": "Justificante de una petición de verificación",
    "verification_code": "Código de verificación",
    "record_hash": "Huella del registro",
    "sealed": "cubierto por un punto de control firmado",
    "attestations": "Certificaciones emitidas (huellas)",
    "verify_help": "Cualquiera puede comprobar este código contra el registro de la plataforma en",
    "download_pdf": "Descargar en PDF",
    "verify_page": "Verificar un justificante",
    "verify_intro": (
        "Introduzca el código de verificación impreso en un justificante. El registro indica si "
        "consta una petición con ese código y cuál fue, sin mostrar a la persona ni ningún dato "
        "certificado."
    ),
    "check": "Comprobar",
    "code_matches": "Este código corresponde a una petición registrada, sin alteraciones.",
    "code_tampered": (
        "Este código corresponde a un registro, pero ya no encaja con su cadena de huellas: ha sido alterado."
    ),
    "verify_no_values": "Aquí no se muestra ninguna persona ni ningún dato certificado.",
    "code_unknown": "No consta ninguna petición con este código.",
    "report_page": "Informe mensual",
    "organisation": "Organización",
    "field_month": "Mes",
    "field_org": "Organización",
    "report_error_month": "debe ser un mes AAAA-MM",
    "report_error_org": "no es un código de organización",
    "download_csv": "Descargar en CSV",
    "as_consumer": "Como cesionario: peticiones realizadas",
    "as_provider": "Como cedente: comprobaciones servidas",
    "checks_served": "Comprobaciones servidas, por cesionario, tipo de certificado y resultado",
    "requests_by_day": "Peticiones por día",
    "latest_requests": "Últimas peticiones",
    "field_consumer": "Cesionario",
    "field_since": "Desde",
    "field_until": "Hasta",
    "field_size": "Cuántas peticiones",
    "field_seed": "Semilla",
    "field_days": "Días para responder",
    "field_form": "Muestra",
    "my_log_page": "Mi registro de accesos",
    "my_log_intro": (
        "Qué administraciones consultaron sus datos a través de la plataforma, cuándo, para qué y "
        "con qué base legal. Cada vez que abre esta página también queda registrado."
    ),
    "my_log_error": "elija usted mismo o una persona a la que represente",
    "whose_log": "Registro de accesos de",
    "myself": "Yo",
    "represented": "Una persona a la que represento",
    "retention_note": "Las entradas se conservan {days} días; las más antiguas se eliminan.",
    "withheld_note": (
        "Algunos accesos pueden no mostrarse aquí por ley (por ejemplo, durante una investigación);"
        " esta página no indica si hay alguno."
    ),
    "officer_authenticated": "Funcionario autenticado",
    "yes": "sí",
    "no": "no",
    "no_entries": "Ninguna administración ha consultado sus datos a través de la plataforma.",
    "sign_in_resident": (
        "Ciudadanos: inicien sesión con el token de su proveedor de identidad electrónica; verán "
        "quién consultó sus datos."
    ),
    "advice_NOT_REPRESENTED": "Un ciudadano pidió el registro de alguien a quien no representa.",
}

MESSAGES: dict[str, dict[str, str]] = {"en": _EN, "es": _ES}


def translate(language: str, key: str, **values: object) -> str:
    """The text of ``key`` in ``language`` (English if it has none), with ``values`` filled in."""
    text = MESSAGES.get(language, _EN).get(key) or _EN[key]
    return text.format(**values) if values else text


def pick_language(requested: str | None, accept_language: str) -> str:
    """The language asked for (a query or cookie), else the first supported one the browser accepts."""
    if requested in LANGUAGES:
        return requested
    for part in accept_language.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE
