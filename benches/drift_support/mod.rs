//! A generator of realistic calls of a customer-support prompt for the
//! drift benchmarks: mixed languages (en 60%, de 15%, fr 15%, es 10%),
//! three topics, lognormal question and answer lengths, JSON answers with
//! a schema, refusals, history turns, streams, errors, timeouts, online
//! scores and thumbs feedback on half the calls. Every knob an injected
//! drift turns is a field of [`Shape`]; `Shape::default()` is "no drift".

#![allow(dead_code)]

use chrono::{DateTime, Duration, Utc};
use promptgate::logstore::{FeedbackRecord, RequestLogRow, RequestStatus, Variant};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

pub const PROMPT: &str = "support";
pub const SCHEMA: &str = r#"{"type":"object","required":["answer","confidence"],"properties":{"answer":{"type":"string"},"confidence":{"type":"number"}}}"#;

const FUNCTION: [&[&str]; 5] = [
    &[
        "the", "is", "my", "i", "to", "and", "of", "a", "in", "for", "with", "it", "this", "that",
        "was", "can", "you", "please", "how", "what", "why", "when", "do", "not", "have", "be",
        "there", "still", "again", "after",
    ],
    &[
        "der", "die", "das", "ist", "mein", "ich", "und", "zu", "von", "ein", "eine", "nicht",
        "mit", "für", "es", "wie", "was", "warum", "wann", "bitte", "haben", "sein", "kann", "auf",
        "den", "noch", "wieder", "nach", "meine", "wurde",
    ],
    &[
        "le", "la", "les", "est", "mon", "je", "et", "de", "un", "une", "pas", "avec", "pour",
        "ce", "comment", "pourquoi", "quand", "vous", "avoir", "être", "peut", "sur", "dans",
        "encore", "après", "ma", "mes", "été", "il", "que",
    ],
    &[
        "el", "la", "los", "es", "mi", "yo", "y", "de", "un", "una", "no", "con", "para", "esto",
        "cómo", "qué", "por", "cuándo", "usted", "tener", "ser", "puede", "en", "sobre", "todavía",
        "otra", "vez", "después", "mis", "fue",
    ],
    &[
        "il", "la", "lo", "è", "mio", "io", "e", "di", "un", "una", "non", "con", "per", "questo",
        "come", "perché", "quando", "lei", "avere", "essere", "può", "su", "nel", "ancora", "dopo",
        "mia", "miei", "stato", "che", "della",
    ],
];

/// [language][topic]: billing, shipping, account, and (drift) repairs.
const TOPICS: [[&[&str]; 4]; 5] = [
    [
        &[
            "invoice",
            "payment",
            "charge",
            "card",
            "price",
            "subscription",
            "bill",
            "receipt",
            "tax",
            "fee",
            "plan",
            "discount",
        ],
        &[
            "package",
            "delivery",
            "order",
            "tracking",
            "address",
            "courier",
            "box",
            "arrival",
            "shipment",
            "warehouse",
            "parcel",
            "label",
        ],
        &[
            "password",
            "login",
            "email",
            "profile",
            "username",
            "settings",
            "security",
            "verification",
            "phone",
            "access",
            "code",
            "device",
        ],
        &[
            "screen", "battery", "repair", "broken", "warranty", "charger", "cable", "keyboard",
            "speaker", "camera", "button", "crack",
        ],
    ],
    [
        &[
            "rechnung",
            "zahlung",
            "karte",
            "preis",
            "abonnement",
            "gebühr",
            "quittung",
            "steuer",
            "tarif",
            "betrag",
            "rabatt",
            "abbuchung",
        ],
        &[
            "paket",
            "lieferung",
            "bestellung",
            "sendung",
            "adresse",
            "kurier",
            "karton",
            "ankunft",
            "versand",
            "lager",
            "zusteller",
            "etikett",
        ],
        &[
            "passwort",
            "anmeldung",
            "konto",
            "profil",
            "benutzername",
            "einstellungen",
            "sicherheit",
            "bestätigung",
            "telefon",
            "zugang",
            "code",
            "gerät",
        ],
        &[
            "bildschirm",
            "akku",
            "reparatur",
            "kaputt",
            "garantie",
            "ladegerät",
            "kabel",
            "tastatur",
            "lautsprecher",
            "kamera",
            "taste",
            "riss",
        ],
    ],
    [
        &[
            "facture",
            "paiement",
            "carte",
            "prix",
            "abonnement",
            "frais",
            "reçu",
            "taxe",
            "forfait",
            "montant",
            "remise",
            "prélèvement",
        ],
        &[
            "colis",
            "livraison",
            "commande",
            "suivi",
            "adresse",
            "coursier",
            "carton",
            "arrivée",
            "expédition",
            "entrepôt",
            "livreur",
            "étiquette",
        ],
        &[
            "passe",
            "connexion",
            "courriel",
            "profil",
            "identifiant",
            "paramètres",
            "sécurité",
            "vérification",
            "téléphone",
            "accès",
            "code",
            "appareil",
        ],
        &[
            "écran",
            "batterie",
            "réparation",
            "cassé",
            "garantie",
            "chargeur",
            "câble",
            "clavier",
            "enceinte",
            "caméra",
            "bouton",
            "fissure",
        ],
    ],
    [
        &[
            "factura",
            "pago",
            "tarjeta",
            "precio",
            "suscripción",
            "cargo",
            "recibo",
            "impuesto",
            "plan",
            "importe",
            "descuento",
            "cobro",
        ],
        &[
            "paquete",
            "entrega",
            "pedido",
            "seguimiento",
            "dirección",
            "mensajero",
            "caja",
            "llegada",
            "envío",
            "almacén",
            "repartidor",
            "etiqueta",
        ],
        &[
            "contraseña",
            "acceso",
            "correo",
            "perfil",
            "usuario",
            "ajustes",
            "seguridad",
            "verificación",
            "teléfono",
            "cuenta",
            "código",
            "dispositivo",
        ],
        &[
            "pantalla",
            "batería",
            "reparación",
            "roto",
            "garantía",
            "cargador",
            "cable",
            "teclado",
            "altavoz",
            "cámara",
            "botón",
            "grieta",
        ],
    ],
    [
        &[
            "fattura",
            "pagamento",
            "carta",
            "prezzo",
            "abbonamento",
            "costo",
            "ricevuta",
            "tassa",
            "piano",
            "importo",
            "sconto",
            "addebito",
        ],
        &[
            "pacco",
            "consegna",
            "ordine",
            "tracciamento",
            "indirizzo",
            "corriere",
            "scatola",
            "arrivo",
            "spedizione",
            "magazzino",
            "fattorino",
            "etichetta",
        ],
        &[
            "password",
            "accesso",
            "posta",
            "profilo",
            "utente",
            "impostazioni",
            "sicurezza",
            "verifica",
            "telefono",
            "account",
            "codice",
            "dispositivo",
        ],
        &[
            "schermo",
            "batteria",
            "riparazione",
            "rotto",
            "garanzia",
            "caricatore",
            "cavo",
            "tastiera",
            "altoparlante",
            "fotocamera",
            "pulsante",
            "crepa",
        ],
    ],
];

/// Languages 0..4: en, de, fr, es, (drift) it.
pub const LANGUAGE_CODES: [&str; 5] = ["eng", "deu", "fra", "spa", "ita"];
const LANGUAGE_SHARES: [f64; 4] = [0.60, 0.15, 0.15, 0.10];
const PRODUCTS: [(&str, f64); 4] = [
    ("basic", 0.5),
    ("pro", 0.3),
    ("team", 0.15),
    ("enterprise", 0.05),
];
const REFUSAL: &str = "I'm sorry, but I can't help with that request.";

/// The distribution calls are drawn from; the default is the reference.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Multiplies the median question length in words.
    pub question_length: f64,
    /// Share of calls whose language becomes Italian.
    pub new_language: f64,
    /// Share of calls about repairs (a new topic), same lengths.
    pub new_topic: f64,
    pub refusal_rate: f64,
    pub invalid_json_rate: f64,
    /// Probability of a thumbs up among calls with feedback.
    pub thumbs_up: f64,
    /// Share of calls 2.5 times slower (a heavier latency tail).
    pub slow_share: f64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            question_length: 1.0,
            new_language: 0.0,
            new_topic: 0.0,
            refusal_rate: 0.02,
            invalid_json_rate: 0.01,
            thumbs_up: 0.75,
            slow_share: 0.0,
        }
    }
}

fn lognormal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
    let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
    median * (sigma * z).exp()
}

fn pick<'a>(rng: &mut StdRng, words: &[&'a str]) -> &'a str {
    words[rng.random_range(0..words.len())]
}

fn sentence(rng: &mut StdRng, lang: usize, topic: usize, words: usize) -> String {
    let mut out: Vec<&str> = Vec::with_capacity(words);
    for _ in 0..words {
        out.push(if rng.random::<f64>() < 0.55 {
            pick(rng, FUNCTION[lang])
        } else {
            pick(rng, TOPICS[lang][topic])
        });
    }
    let mut s = out.join(" ");
    if let Some(first) = s.get(..1) {
        s = first.to_uppercase() + &s[1..];
    }
    s
}

/// One generated call, with what the feature export needs.
pub struct Call {
    pub row: RequestLogRow,
    pub feedback: Option<FeedbackRecord>,
    pub language: &'static str,
    pub question: String,
    pub answer: String,
    pub product: &'static str,
    pub history_turns: usize,
    pub json_valid: bool,
    pub refusal: bool,
}

/// Draws calls from one shape.
pub struct Generator {
    rng: StdRng,
    shape: Shape,
    next_id: u64,
    prefix: String,
    start: DateTime<Utc>,
    step: Duration,
}

impl Generator {
    pub fn new(seed: u64, shape: Shape, prefix: &str, start: DateTime<Utc>) -> Generator {
        Generator {
            rng: StdRng::seed_from_u64(seed),
            shape,
            next_id: 0,
            prefix: prefix.to_string(),
            start,
            step: Duration::milliseconds(250),
        }
    }

    /// Time between calls (default 250 ms).
    pub fn with_step(mut self, step: Duration) -> Generator {
        self.step = step;
        self
    }

    pub fn call(&mut self) -> Call {
        let rng = &mut self.rng;
        let s = self.shape;
        let i = self.next_id;
        self.next_id += 1;
        let mut lang = {
            let u: f64 = rng.random();
            let mut acc = 0.0;
            let mut l = 0;
            for (k, share) in LANGUAGE_SHARES.iter().enumerate() {
                acc += share;
                if u < acc {
                    l = k;
                    break;
                }
                l = k;
            }
            l
        };
        if rng.random::<f64>() < s.new_language {
            lang = 4;
        }
        let topic = if rng.random::<f64>() < s.new_topic {
            3
        } else {
            rng.random_range(0..3)
        };
        let q_words =
            (lognormal(rng, 16.0 * s.question_length, 0.5).round() as usize).clamp(3, 120);
        let question = format!("{}?", sentence(rng, lang, topic, q_words));
        let product = {
            let u: f64 = rng.random();
            let mut acc = 0.0;
            let mut p = PRODUCTS[0].0;
            for (name, share) in PRODUCTS {
                acc += share;
                p = name;
                if u < acc {
                    break;
                }
            }
            p
        };
        let turns = match rng.random::<f64>() {
            u if u < 0.7 => 0,
            u if u < 0.9 => 1,
            _ => 2,
        };
        let mut messages = vec![
            json!({"role": "system", "content": "You are the support assistant of Acme. Answer in the user's language as JSON {\"answer\", \"confidence\"}."}),
        ];
        for _ in 0..turns {
            let w = rng.random_range(4..20);
            messages.push(json!({"role": "user", "content": sentence(rng, lang, topic, w)}));
            let w = rng.random_range(8..40);
            messages.push(json!({"role": "assistant", "content": sentence(rng, lang, topic, w)}));
        }
        messages.push(json!({"role": "user", "content": format!("[{product}] {question}")}));

        let refusal = rng.random::<f64>() < s.refusal_rate;
        let a_words = (lognormal(rng, 45.0, 0.5).round() as usize).clamp(3, 300);
        let answer = if refusal {
            REFUSAL.to_string()
        } else {
            sentence(rng, lang, topic, a_words) + "."
        };
        let confidence = ((rng.random::<f64>() * 0.5 + 0.5) * 100.0).round() / 100.0;
        let full = json!({"answer": answer, "confidence": confidence}).to_string();
        let json_valid = rng.random::<f64>() >= s.invalid_json_rate;
        let output = if json_valid {
            full
        } else {
            full.chars().take(full.chars().count() / 2).collect()
        };

        let mut row = RequestLogRow::new(
            format!("{}-{i:08}", self.prefix),
            self.start + self.step * i as i32,
        );
        row.prompt_id = Some(PROMPT.into());
        row.prompt_version = Some("b10b5a1e".into());
        row.git_ref = Some("refs/heads/main".into());
        row.commit = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00".into();
        row.variant = Variant::Stable;
        row.model = "support-model".into();
        row.upstream_model = "llama3.2:3b".into();
        row.variables = json!({"question": question, "product": product}).to_string();
        row.messages = serde_json::Value::Array(messages).to_string();
        row.input_tokens = 60 + (q_words as f64 * 1.3) as u64 + turns as u64 * 40;
        let answer_words = answer.split_whitespace().count();
        row.output_tokens = 12 + (answer_words as f64 * 1.3) as u64;
        let mut latency = (250.0 + row.output_tokens as f64 * 12.0) * lognormal(rng, 1.0, 0.3);
        if rng.random::<f64>() < s.slow_share {
            latency *= 2.5;
        }
        row.stream = rng.random::<f64>() < 0.5;
        if row.stream {
            row.ttft_ms = Some(lognormal(rng, 180.0, 0.35));
        }
        let outcome: f64 = rng.random();
        if outcome < 0.01 {
            row.status = RequestStatus::Error;
            row.http_status = 502;
            row.error = Some("upstream returned 500".into());
            row.output = String::new();
            row.output_tokens = 0;
            latency *= 0.3;
        } else if outcome < 0.013 {
            row.status = RequestStatus::Timeout;
            row.http_status = 504;
            row.error = Some("upstream timed out".into());
            row.output = String::new();
            row.output_tokens = 0;
            latency = 60_000.0;
        } else {
            row.output = output;
            let short = answer.chars().count() < 600;
            row.online_pass = Some(json_valid && short);
            row.online_scores = json!({"json": if json_valid { 1.0 } else { 0.0 }, "short": if short { 1.0 } else { 0.0 }}).to_string();
        }
        row.latency_ms = latency;
        row.cost = row.input_tokens as f64 * 0.5e-6 + row.output_tokens as f64 * 1.5e-6;
        row.user_hash = Some(format!("u{}", rng.random_range(0..5000)));
        let feedback = (rng.random::<f64>() < 0.5).then(|| {
            let up = rng.random::<f64>() < s.thumbs_up;
            let mut f = FeedbackRecord::new(row.request_id.clone(), if up { 1.0 } else { 0.0 });
            f.feedback_id = format!("fb-{}", row.request_id);
            f.ts = row.ts + Duration::seconds(30);
            f.label = if up {
                (rng.random::<f64>() < 0.7).then(|| "helpful".to_string())
            } else {
                Some(pick(rng, &["wrong", "too_long", "off_topic"]).to_string())
            };
            f
        });
        Call {
            row,
            feedback,
            language: LANGUAGE_CODES[lang],
            question,
            answer,
            product,
            history_turns: turns,
            json_valid,
            refusal,
        }
    }
}
