"""Prompts for the `writing`, `summarisation` and `translation` routes."""

ITEMS = []


def add(label, tags, *texts):
    for t in texts:
        ITEMS.append((label, tags, t))


# ---------------------------------------------------------------- writing
add("writing", "",
    "Write a short bio for my conference talk page, third person, about 80 words.",
    "Can you draft an out-of-office reply for while I'm on parental leave until March?",
    "Write a limerick about a cat who hates Mondays.",
    "Help me write a toast for my parents' 40th wedding anniversary.",
    "Draft a polite message declining a job offer after accepting another one.",
    "Write an Instagram caption for a photo of our new bakery storefront.",
    "Give me three subject lines for a newsletter announcing our spring sale.",
    "Write a bedtime story about a dragon who is afraid of the dark.",
    "Turn these bullet points into a friendly welcome email for new employees: start at 9, badge at reception, lunch with the team.",
    "Write a haiku about the first snow.",
    "Help me write an apology to a friend whose birthday I forgot.",
    "Write a 500-word opinion piece arguing that homework should be banned in primary school.",
    "Draft a press release announcing our app's launch in Canada.",
    "Write the script for a 30-second radio ad for a car wash.",
    "Rewrite my sentence to sound less passive-aggressive: 'As I already said in my last email, the deadline was Friday.'",
    "Write a eulogy for my grandfather, who was a fisherman and loved crosswords.",
)
add("writing", "typo",
    "write me a funy poem for my freinds retirement card",
    "can u make my cover leter sound more confident",
    "need a short speach for my sisters graduation party",
    "rewrite this so it sounds profesional: hey guys the meeting is moved again sry",
)
add("writing", "multi",
    "I'm applying for a nursing job at a children's hospital. I have five years of ICU experience. Can "
    "you write a cover letter that doesn't sound generic?",
    "Our team is switching from Slack to Teams next month. People are not happy about it. Write an "
    "announcement that is honest but upbeat.",
    "I want to write a short horror story for a contest. Max 1000 words. The setting is an empty "
    "supermarket at night. Can you write a first draft?",
)
add("writing", "hard",
    "Write a blog post explaining to beginners why learning Python is worth it.",
    "Write a friendly email to our customers telling them that prices will increase by 5% next month.",
    "Write a short motivational speech for a math olympiad team before the finals.",
)
add("writing", "",
    """Can you improve this paragraph from my personal statement? It feels flat.

"I have always been interested in engineering. When I was young I liked to build things with Lego and
take apart old radios. In high school I joined the robotics club and we went to the regional finals.
This experience taught me teamwork and problem solving. I want to study mechanical engineering because
I want to design machines that help people. I believe your university is the right place for me because
of its strong programme and good reputation."

Keep it under 150 words and make it sound like me, not like a brochure.""",
    """Please rewrite this email to my landlord so it's firm but still polite:

Hi Mark, the heating has been broken for 2 weeks now and I've messaged you 3 times. It's freezing and I
have a baby. I pay rent on time every month and I expect the same from you. If it's not fixed by Friday
I'm going to call the council. This is ridiculous. - Jenna

I don't want to start a fight, I just want it fixed.""",
    """I run a small pottery studio and need copy for the 'About us' page of our new website. Some facts:
started in 2016 in a converted garage, now in an old printing shop on Mill Lane; two potters, Ana and
Tom; we make tableware fired in a gas kiln with glazes we mix ourselves; we teach evening classes for
beginners on Tuesdays and Thursdays; we care about food-safe, lead-free glazes and local clay. The tone
should be warm and a bit playful, not corporate. About 200 words, please.""",
    """Write a LinkedIn post for me. Context: I was laid off last week along with 30% of the company. I
worked there for four years as a product designer, led the redesign of the checkout flow that increased
conversion by 12%, and mentored three junior designers. I'm now looking for senior product design roles,
remote or in Lisbon. I want to thank my team, not sound bitter, and end with a clear ask for
introductions. Keep it short enough that people actually read it.""",
    """Here's the opening of my short story. Could you continue it for about 300 words in the same style?

"The ferry was late again, which in Port Alder meant nothing and everything. Mrs Okafor stood at the end
of the pier with her umbrella folded, because she had decided long ago that rain was a matter of
opinion. Behind her, the town was pretending to be asleep. In front of her, the sea was pretending to
be empty. Somewhere between the two, a boat that had left in 1987 was finally coming home."

Keep the slightly dry, mysterious tone.""",
    """I need a speech for a charity dinner. I'm the director of a food bank. Facts to include: we served
41,000 meals last year, up 30%; 220 volunteers; a new cold-storage room paid for by last year's dinner;
our goal this year is a delivery van for elderly people who cannot travel. I'll speak for about three
minutes. I'd like to open with a short story about a volunteer, Mr Patel, who is 84 and comes every
Wednesday. End with the ask, but not in a pushy way.""",
    """Can you turn these notes into a proper product description for our online shop?

- merino wool beanie, one size
- made in Scotland, small family mill
- colours: charcoal, moss, rust
- breathable, doesn't itch, machine washable at 30
- 15% of profits go to a mountain rescue charity

Audience is hikers and outdoor people, 100 to 150 words, and end with a line that makes people want it
as a gift.""",
)
add("writing", "es",
    "Escríbeme un poema corto sobre el mar para el cumpleaños de mi madre.",
    "Ayúdame a redactar un correo formal para pedir una reunión con el director del colegio.",
)
add("writing", "fr",
    "Rédige une lettre de motivation pour un poste de serveur dans un restaurant à Lyon.",
)
add("writing", "de",
    "Schreib mir einen kurzen, lustigen Text für die Einladung zu meiner Geburtstagsfeier.",
    "Kannst du meine Bewerbung für eine Ausbildung als Mechatroniker überarbeiten, damit sie professioneller klingt?",
)

# ---------------------------------------------------------------- summarisation
add("summarisation", "",
    "Give me the three most important points of the text I'm about to paste.",
    "Can you summarise the attached PDF of the city council minutes?",
    "Sum up this podcast transcript in a paragraph.",
    "Make a TL;DR for this long Reddit thread.",
    "What are the main arguments of this op-ed, in bullet points?",
    "Summarize the changes described in this changelog for a non-technical audience.",
    "Condense these customer interviews into the top five recurring complaints.",
    "I need a one-page summary of this 40-page grant proposal.",
    "Summarise this legal judgement in plain language, just the outcome and the reasons.",
    "Could you write an abstract for my paper based on the sections below?",
    "Give me a short recap of yesterday's standup notes for the people who missed it.",
    "Shorten this product spec into a few sentences for the release notes.",
    "Summarize each chapter of this book outline in one line.",
    "What does this press release actually say, in two sentences?",
    "Extract the key decisions and owners from this meeting transcript.",
    "Digest this week's newsletter into five bullets.",
)
add("summarisation", "typo",
    "sumarize this artical for me pls",
    "can u give me the short version of this email chain",
    "tldr of the doc bellow",
    "whats the main point of this text, i dont get it",
)
add("summarisation", "multi",
    "My boss sent me a 12-page strategy memo. I have a meeting about it in 10 minutes. What are the key "
    "points I need to know?",
    "I'm pasting the transcript of a 2-hour user research session. Pull out the pain points. Keep it to "
    "one screen.",
    "Below are the notes from three different project meetings. Merge them into one summary with open "
    "questions at the end.",
)
add("summarisation", "hard",
    "Summarise this Python file: what does each function do, in one line each?",
    "Give me a short summary of this patient information leaflet so my dad understands it.",
    "Summarise the main clauses of this rental agreement in plain words.",
)
add("summarisation", "",
    """Please summarise this in 3 bullet points for my team:

Following a review of office usage over the past six months, the facilities team has found that average
daily occupancy of the third floor is 23%, compared with 61% for the second floor. From 1 June the third
floor will be closed on Mondays and Fridays, and desks there will be bookable only through the new
booking app. Teams currently seated on the third floor (Marketing, Legal and Partnerships) will keep
their team zones on Tuesdays to Thursdays. The savings in heating, cleaning and security are estimated
at 140,000 per year and will be reinvested in better meeting rooms on the second floor, including four
new rooms with video conferencing equipment. Staff who need a fixed desk for health reasons should
contact HR before 15 May. Feedback can be sent to facilities@example.com until the end of the month.""",
    """tl;dr?

Hi all, quick update on the migration. We moved 14 of the 20 services to the new cluster over the
weekend. Search, notifications and the admin panel are still on the old cluster because of the shared
session store, which we can't move until the auth team ships the token change (ETA next Wednesday).
Latency on the migrated services is about 15% better. We had one incident on Saturday night: the
payments service lost its connection to the queue for 11 minutes because of a misconfigured security
group. No payments were lost, they were retried, but some customers saw a delay of up to 20 minutes on
their confirmation emails. We've added an alert for that. Next steps: finish the remaining six by the
end of the month, then decommission the old cluster in the first week of next month. Please don't
deploy anything to the old cluster after Friday without pinging me.""",
    """Can you give me the key points of this article? Text:

Cities around the world are experimenting with four-day school weeks, mostly to save money on
transport and heating. Early studies from rural districts in the United States suggest the savings are
smaller than expected, usually between 1 and 2 percent of the budget. Effects on learning are mixed:
some districts saw small drops in maths scores, especially for students from low-income families, while
attendance among teachers improved and hiring became easier. Parents report difficulties with childcare
on the fifth day, and several districts now run optional activity programmes on that day, which reduces
the savings further. Researchers say the decision should depend on local circumstances and that longer
school days on the remaining four days may matter more than the number of days itself.""",
    """Summarise this customer review thread for the product team. What are people happy and unhappy about?

"Battery lasts forever, easily a week. The strap broke after two months though." - 3 stars
"Love the sleep tracking, but the app crashes every time I try to export data." - 3 stars
"Perfect for running, GPS locks in seconds. Wish it had music storage." - 4 stars
"Strap snapped on day 40. Support sent a new one quickly, credit to them." - 4 stars
"Heart rate is way off during weight training, fine when running." - 2 stars
"Great value. Screen is hard to read in direct sunlight." - 4 stars
"App sync is flaky, sometimes I lose a whole day of steps." - 2 stars""",
    """Here are my lecture notes from today. Can you condense them into a study summary with the key terms
in bold?

Photosynthesis: light-dependent reactions in thylakoid membranes, produce ATP and NADPH, water is split
and oxygen released. Calvin cycle in the stroma, uses ATP and NADPH to fix CO2 into G3P, enzyme RuBisCO.
C4 plants (maize, sugar cane) separate initial CO2 fixation spatially, PEP carboxylase, reduces
photorespiration in hot climates. CAM plants (cacti, pineapple) separate it in time, open stomata at
night. Limiting factors: light intensity, CO2 concentration, temperature. Exam will have a question
comparing C3, C4 and CAM.""",
    """What did we decide in this email thread? I was on holiday.

From Priya: Can we push the launch to the 14th? QA found two blockers in checkout.
From Dan: The 14th clashes with the partner webinar. What about the 16th?
From Priya: 16th works for engineering if the blockers are fixed by the 12th.
From Laura: Marketing can move the email campaign to the 16th, but the paid ads are booked for the
14th and can't be cancelled. We could run them pointing to the waitlist page instead.
From Dan: OK, let's do the 16th, ads go to the waitlist. Priya, please confirm the blockers by Tuesday.
From Priya: Blockers fixed and verified on Tuesday. We're good for the 16th.""",
    """I have to present this paper's abstract to my reading group in a sentence or two. Help?

"We study the effect of remote work on the innovation output of software teams using data from 4,200
open-source repositories and 310 companies between 2018 and 2023. Exploiting the sudden shift to remote
work in March 2020 as a natural experiment, we find that fully remote teams produce 8% fewer novel
features but resolve bugs 12% faster than comparable co-located teams. The effect on novelty is
concentrated in teams with fewer than two years of shared history, suggesting that pre-existing social
ties substitute for in-person interaction. We discuss implications for hybrid work policies.\"""",
    """Summarise this Slack thread for the incident report, neutral tone, max 100 words:

[09:02] ana: checkout is returning 500s for some users
[09:04] raj: seeing it too, only EU region
[09:05] ana: started right after the 08:55 deploy?
[09:09] raj: yes, the new config has the wrong db host for eu-west
[09:11] mia: rolling back now
[09:18] mia: rollback done, errors gone
[09:25] ana: ~7% of EU checkouts failed during 09:00-09:18, about 430 orders
[09:40] raj: fix merged, config validated in staging, redeploying at 10:00""",
)
add("summarisation", "es",
    "Resume este artículo en tres frases, por favor.",
    "¿Me haces un resumen de las notas de la reunión que te pego abajo?",
)
add("summarisation", "fr",
    "Peux-tu résumer ce rapport en quelques points clés ?",
)
add("summarisation", "de",
    "Fass mir bitte diesen langen Artikel in fünf Stichpunkten zusammen.",
    """Kannst du diese E-Mail kurz zusammenfassen? Ich habe keine Zeit, alles zu lesen.

Liebe Kolleginnen und Kollegen, ab dem 1. Oktober gelten neue Regeln für Dienstreisen. Reisen unter
500 Kilometern sollen grundsätzlich mit der Bahn erfolgen, Flüge nur mit Genehmigung der Abteilungsleitung.
Hotelkosten werden bis 120 Euro pro Nacht erstattet, in München, Hamburg und Frankfurt bis 150 Euro.
Belege müssen innerhalb von 30 Tagen im neuen Reiseportal hochgeladen werden, sonst verfällt der Anspruch.
Für Fragen steht das Team Reisekosten zur Verfügung. Viele Grüße, Ihre Personalabteilung""",
)

# ---------------------------------------------------------------- translation
add("translation", "",
    "Translate 'the meeting has been moved to Thursday afternoon' into Spanish.",
    "How do you say 'could I have the bill, please' in Italian?",
    "What does 'Schadenfreude' mean in English?",
    "Translate this sentence into Japanese, polite form: 'Thank you for your help yesterday.'",
    "Can you translate my CV summary into German?",
    "What's the French for 'I'm looking forward to hearing from you' in a formal letter?",
    "Translate these three street signs from Turkish for me.",
    "Put this paragraph into Brazilian Portuguese, informal tone.",
    "How do I say 'where is the bathroom' in Mandarin, with pinyin?",
    "Translate 'no pain, no gain' into Russian, keeping it idiomatic.",
    "What does 'hygge' mean and is there an English equivalent?",
    "Translate my app's error messages into Spanish, keep the placeholders like {name} untouched.",
    "English to Swedish please: 'The package will arrive in two to three working days.'",
    "Can you translate the lyrics of this Portuguese fado into English?",
    "How would you translate 'Feierabend' into English?",
    "Translate this tweet from Korean.",
)
add("translation", "typo",
    "translat 'good luck on your exam' to german",
    "how do u say i love you in vietnamese",
    "whats 'estoy cansado' in englsh",
    "pls translate to italian: see u tmrw at the station",
)
add("translation", "multi",
    "My mother-in-law only speaks Polish. I want to send her a birthday message. Can you translate 'Happy "
    "birthday, thank you for everything, we can't wait to see you in summer'?",
    "I'm going to Greece next week. Could you translate a few phrases: hello, thank you, how much is "
    "this, and the check please?",
    "We got a letter from the Dutch tax office. I'll paste it below. Please translate it to English and "
    "keep the formatting.",
)
add("translation", "hard",
    "Translate this Python error message into French for our users: 'File not found, please check the path.'",
    "Translate the summary below into Spanish, don't shorten it.",
    "How do you say 'prescription' and 'pharmacy' in Thai?",
)
add("translation", "",
    """Please translate this email to our supplier into German, formal register:

Dear Mr Weber,
Thank you for your quick reply. We would like to confirm the order of 500 units of the stainless steel
brackets (article 4471-B) at the price you quoted. Please note that our delivery address has changed:
from 1 May all deliveries should go to our new warehouse at Industriestrasse 12, 4052 Basel. Could you
also send us the updated safety data sheet for the coating? We look forward to continuing our
cooperation.
Kind regards,
Sofia Marin, Purchasing""",
    """Can you translate this into English? It's from my grandmother's old letter and I can't read Italian.

Cara Lucia, qui in campagna il tempo è stato bellissimo e le viti sono piene di uva. Tuo nonno lavora
tutto il giorno anche se il dottore gli ha detto di riposare. Il cane è diventato vecchio ma corre
ancora dietro alle galline. Mi manchi tanto. Quando vieni a trovarci? Ti aspetto per la vendemmia a
settembre, porta anche il tuo fidanzato, voglio conoscerlo. Un abbraccio forte, la tua nonna.""",
    """I need this product description in French and Spanish for our EU store. Keep the tone playful.

"Meet Bolt, the travel mug that refuses to spill. Toss it in your bag, turn it upside down, shake it
like you mean it: not a drop. Double-walled steel keeps coffee hot for 6 hours and iced tea cold for
12. It fits in every car cup holder we could find, and the lid comes apart in three pieces for easy
cleaning. Available in Midnight, Sage and Sunset.\"""",
    """Translate the following terms and conditions paragraph into Spanish, keeping legal precision:

"The subscription renews automatically at the end of each billing period unless cancelled at least 24
hours before renewal. Refunds are not provided for partial periods. We may change the price of the
subscription with 30 days' notice; continued use after the change takes effect constitutes acceptance
of the new price. You may cancel at any time from your account settings.\"""",
    """We're hosting Japanese guests next week. Could you translate this welcome note into Japanese
(polite but warm)?

Welcome to Edinburgh! We are delighted that you could join us for the design workshop. Breakfast is
served from 7:30 in the hotel restaurant. A taxi will pick you up at 8:45 each morning and take you to
our studio, which is a ten-minute drive away. On Wednesday evening we would like to invite you to a
traditional Scottish dinner. Please tell us if you have any dietary requirements. If you need anything
at all, call Fiona on +44 7700 900123.""",
    """My French colleague wrote this in our team chat and the online translator gives nonsense. What
does it mean, in natural English?

« Bon, je vais pas y aller par quatre chemins : la démo de vendredi, c'était pas terrible. On a
voulu trop en montrer, et le client a décroché au bout de dix minutes. La prochaine fois, on se
concentre sur deux fonctionnalités et on répète la veille. Cela dit, chapeau à Julie pour la partie
sur les rapports, c'était nickel. »""",
    """Translate into English, and tell me if anything sounds rude, because I'm not sure about the tone:

Estimado Sr. Gómez: Le escribo porque, a pesar de nuestras repetidas solicitudes, todavía no hemos
recibido el pago de la factura 2024-118, vencida desde hace más de sesenta días. Entendemos que pueden
surgir dificultades, pero nos vemos obligados a informarle de que, si no recibimos el pago antes del
día 30, nos reservamos el derecho de suspender los servicios. Quedamos a su disposición para acordar
un plan de pagos si lo considera oportuno.""",
)
add("translation", "es",
    "¿Cómo se dice 'me he perdido' en alemán?",
    "Tradúceme al francés esta frase: nos vemos mañana en la estación.",
)
add("translation", "fr",
    "Comment dit-on « bon appétit » en japonais ?",
    "Traduis ce paragraphe en anglais, s'il te plaît, en gardant un ton formel.",
)
add("translation", "de",
    "Was heißt 'Kündigungsfrist' auf Englisch?",
)
