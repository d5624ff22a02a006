//! The built-in demo dataset: synthetic support tickets for a fictional
//! online shop ("Northwind Goods"), generated deterministically from a seed.
//!
//! 11 queues plus `escalate` (about 5%: ambiguous tickets that mix two
//! requests, and off-topic ones). Tickets vary openers, one or two request
//! sentences drawn from per-queue phrasings with slots (order numbers,
//! amounts, products, dates), optional context and sign-offs, typos in about
//! a third of them, fake emails and phone numbers in about 15% (to exercise
//! redaction), and about 2% re-sent near-copies (to exercise dedup).
//! **Synthetic**: real data lives in `../shared/datasets` and users' files.

const QUEUES: &[(&str, &[&str])] = &[
    (
        "billing",
        &[
            "I was charged twice for order {order}",
            "my invoice for {month} shows {amount} but I expected less",
            "why is there an extra fee of {amount} on my bill",
            "can you send me a VAT invoice for order {order}",
            "the amount on my statement does not match my receipt",
            "I need a copy of my last invoice",
            "there is a charge of {amount} I don't recognise",
            "please correct the billing address on my account",
        ],
    ),
    (
        "refunds",
        &[
            "I want a refund for order {order}",
            "when will I get my money back for the {product}",
            "my refund of {amount} has not arrived yet",
            "you promised a refund two weeks ago and nothing happened",
            "please refund the {product}, it was not what I ordered",
            "how long does a refund take to reach my card",
            "I cancelled order {order} but was not refunded",
        ],
    ),
    (
        "login",
        &[
            "I can't log in to my account",
            "the app says my password is wrong but it is not",
            "I'm locked out after too many attempts",
            "the two-factor code never arrives",
            "login page keeps spinning and never loads",
            "I reset my password but still cannot sign in",
            "my account shows as disabled when I try to log in",
        ],
    ),
    (
        "shipping",
        &[
            "where is my order {order}",
            "the tracking for {order} has not updated since {day}",
            "my parcel says delivered but I never got it",
            "can you ship to a different address",
            "delivery is late, it was due on {day}",
            "the courier left my {product} at the wrong house",
            "how much is express shipping to Canada",
        ],
    ),
    (
        "returns",
        &[
            "how do I return the {product}",
            "I need a return label for order {order}",
            "the {product} arrived broken and I want to send it back",
            "can I exchange the {product} for a different size",
            "what is your return policy for opened items",
            "I dropped off the return on {day}, did you receive it",
        ],
    ),
    (
        "account",
        &[
            "please delete my account and all my data",
            "how do I change the email on my account",
            "I want to close my account",
            "update my phone number please",
            "can I merge my two accounts",
            "I want to download all the data you hold about me",
        ],
    ),
    (
        "technical",
        &[
            "the app crashes when I open my basket",
            "checkout button does nothing on my phone",
            "your website shows an error 500 on the product page",
            "images are not loading in the app",
            "the search returns nothing even for {product}",
            "the page freezes after I add the {product} to my cart",
        ],
    ),
    (
        "subscription",
        &[
            "cancel my premium subscription",
            "how do I pause my membership for a month",
            "I was renewed without being asked",
            "upgrade me to the yearly plan",
            "what do I get with premium",
            "my subscription shows expired but I paid on {day}",
        ],
    ),
    (
        "payments",
        &[
            "my card was declined at checkout",
            "payment failed but the money left my account",
            "can I pay with PayPal",
            "the gift card code {order} does not work",
            "I want to pay in instalments",
            "checkout says my billing postcode is invalid",
        ],
    ),
    (
        "orders",
        &[
            "I want to cancel order {order}",
            "can I add the {product} to order {order}",
            "I ordered the wrong size, can you change it before it ships",
            "my order {order} is missing the {product}",
            "please change the delivery date of order {order}",
            "is the {product} back in stock",
        ],
    ),
    (
        "feedback",
        &[
            "just wanted to say the {product} is great",
            "your support team was very helpful last week",
            "suggestion: add a dark mode to the app",
            "the packaging was excessive, please use less plastic",
            "I love the new website design",
            "it would be nice to have gift wrapping",
        ],
    ),
];

const OFF_TOPIC: &[&str] = &[
    "what do you think about the election",
    "can you recommend a good pizza place nearby",
    "is this the number for the dentist",
    "my neighbour's dog keeps barking, what should I do",
    "I want to speak to a lawyer about this",
    "this is your last warning before I go to the press",
    "are you a real person or a bot",
    "what is the meaning of life",
];

const OPENERS: &[&str] = &[
    "",
    "",
    "Hi,",
    "Hello,",
    "Hi team,",
    "Good morning,",
    "Hey there,",
    "Dear support,",
    "URGENT:",
];
const CONTEXT: &[&str] = &[
    "",
    "",
    "",
    "I have been a customer for years.",
    "This is the second time I am writing about this.",
    "I already tried the help centre.",
    "My friend had the same problem.",
    "I am travelling next week.",
    "Nobody answered my last email.",
];
const CLOSERS: &[&str] = &[
    "",
    "",
    "Thanks",
    "Thank you!",
    "Regards, {name}",
    "Please help asap",
    "Cheers, {name}",
    "Thanks in advance.",
];
const PRODUCTS: &[&str] = &[
    "blue kettle",
    "wool jumper",
    "desk lamp",
    "running shoes",
    "phone case",
    "coffee grinder",
    "yoga mat",
    "rain jacket",
    "toaster",
    "backpack",
];
const NAMES: &[&str] = &[
    "Anna", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jon",
];
const MONTHS: &[&str] = &["January", "March", "May", "July", "September", "November"];
const DAYS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Friday",
    "the 3rd",
    "the 14th",
    "last week",
];

/// Draws for the generator, on distill-core's seeded splitmix64.
struct Rng(distill_core::hash::SplitMix64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        self.0.next_f64() <= p
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

fn fill(template: &str, r: &mut Rng) -> String {
    let mut s = template.to_string();
    if s.contains("{order}") {
        s = s.replace("{order}", &format!("#{}", 100_000 + r.below(900_000)));
    }
    if s.contains("{amount}") {
        s = s.replace(
            "{amount}",
            &format!("${}.{:02}", 5 + r.below(300), r.below(100)),
        );
    }
    for (slot, pool) in [
        ("{product}", PRODUCTS),
        ("{name}", NAMES),
        ("{month}", MONTHS),
        ("{day}", DAYS),
    ] {
        while s.contains(slot) {
            s = s.replacen(slot, r.pick(pool), 1);
        }
    }
    s
}

fn typo(word: &str, r: &mut Rng) -> String {
    let mut c: Vec<char> = word.chars().collect();
    if c.len() < 4 {
        return word.to_string();
    }
    let i = 1 + r.below(c.len() - 2);
    match r.below(3) {
        0 => c.swap(i, i + 1),
        1 => {
            c.remove(i);
        }
        _ => {
            let ch = c[i];
            c.insert(i, ch);
        }
    }
    c.into_iter().collect()
}

fn sentence(s: &str) -> String {
    let mut c = s.chars();
    let first = c
        .next()
        .map(|f| f.to_uppercase().collect::<String>())
        .unwrap_or_default();
    let body: String = c.collect();
    let end = if body.ends_with('?') || body.ends_with('!') || body.ends_with('.') {
        ""
    } else {
        "."
    };
    format!("{first}{body}{end}")
}

/// `(text, queue)` pairs, deterministic in `seed`.
pub fn tickets(n: usize, seed: u64) -> Vec<(String, String)> {
    let mut r = Rng(distill_core::hash::SplitMix64(seed ^ 0xD15_7111));
    let mut out: Vec<(String, String)> = Vec::with_capacity(n);
    while out.len() < n {
        // ~2%: a re-sent near-copy of an earlier ticket.
        if out.len() > 50 && r.chance(0.02) {
            let (t, l) = out[r.below(out.len())].clone();
            let t = if r.chance(0.5) {
                format!("{t} Any update?")
            } else {
                t.replace('.', "!")
            };
            out.push((t, l));
            continue;
        }
        let escalate = r.chance(0.05);
        let (label, core) = if escalate {
            if r.chance(0.5) {
                ("escalate".to_string(), r.pick(OFF_TOPIC).to_string())
            } else {
                // Two different requests in one ticket: which queue?
                let a = r.below(QUEUES.len());
                let b = (a + 1 + r.below(QUEUES.len() - 1)) % QUEUES.len();
                let x = fill(r.pick(QUEUES[a].1), &mut r);
                let y = fill(r.pick(QUEUES[b].1), &mut r);
                ("escalate".to_string(), format!("{x}. Also {y}"))
            }
        } else {
            let q = r.below(QUEUES.len());
            let mut core = fill(r.pick(QUEUES[q].1), &mut r);
            if r.chance(0.25) {
                core = format!("{core}. {}", sentence(&fill(r.pick(QUEUES[q].1), &mut r)));
            }
            (QUEUES[q].0.to_string(), core)
        };
        let mut parts: Vec<String> = Vec::new();
        let opener = r.pick(OPENERS);
        if !opener.is_empty() {
            parts.push(opener.to_string());
        }
        parts.push(sentence(&core));
        let ctx = r.pick(CONTEXT);
        if !ctx.is_empty() {
            parts.push(ctx.to_string());
        }
        if r.chance(0.15) {
            let name = r.pick(NAMES).to_lowercase();
            if r.chance(0.5) {
                parts.push(format!(
                    "You can reach me at {name}.{}@example.com.",
                    r.below(100)
                ));
            } else {
                parts.push(format!("Call me on +44 7700 {:06}.", r.below(1_000_000)));
            }
        }
        let closer = fill(r.pick(CLOSERS), &mut r);
        if !closer.is_empty() {
            parts.push(closer);
        }
        let mut text = parts.join(" ");
        if r.chance(0.35) {
            let words: Vec<&str> = text.split(' ').collect();
            let k = 1 + r.below(3);
            let mut words: Vec<String> = words.into_iter().map(str::to_string).collect();
            for _ in 0..k {
                let i = r.below(words.len());
                words[i] = typo(&words[i], &mut r);
            }
            text = words.join(" ");
        }
        if r.chance(0.1) {
            text = text.to_lowercase();
        }
        out.push((text, label));
    }
    out
}

/// The queue names (with `escalate`).
pub fn queues() -> Vec<String> {
    let mut q: Vec<String> = QUEUES.iter().map(|(n, _)| n.to_string()).collect();
    q.push("escalate".into());
    q.sort();
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_varied_and_labelled() {
        let a = tickets(3000, 7);
        assert_eq!(a, tickets(3000, 7));
        assert_ne!(a, tickets(3000, 8));
        let escalate = a.iter().filter(|(_, l)| l == "escalate").count();
        assert!((100..220).contains(&escalate), "{escalate}");
        let labels: std::collections::BTreeSet<&str> = a.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels.len(), 12);
        assert!(a.iter().any(|(t, _)| t.contains("@example.com")));
        assert!(a.iter().any(|(t, _)| t.contains("+44 7700")));
        let distinct: std::collections::BTreeSet<&str> =
            a.iter().map(|(t, _)| t.as_str()).collect();
        assert!(distinct.len() > 2700, "mostly distinct: {}", distinct.len());
    }
}
