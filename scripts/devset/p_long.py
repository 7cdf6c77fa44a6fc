"""More long prompts (pasted payloads with the request before, after or around them), for every route
and for out of scope, so that about a fifth of the set is 60-250 words."""

ITEMS = []


def add(label, tags, *texts):
    for t in texts:
        ITEMS.append((label, tags, t))


add("code", "",
    """def load(path):
    f = open(path)
    data = f.read()
    rows = []
    for line in data.split('\\n'):
        if line == '':
            continue
        parts = line.split(',')
        rows.append({'name': parts[0], 'age': int(parts[1]), 'city': parts[2]})
    return rows

def oldest(rows):
    best = None
    for r in rows:
        if best == None or r['age'] > best['age']:
            best = r
    return best

This works, but I'd like you to write a new version of this module: use the csv module and a dataclass
for the rows, add a function that groups people by city, and add type hints and a main() that prints
the oldest person in each city.""",
)
add("debugging", "",
    """thread 'tokio-runtime-worker' panicked at src/handlers/upload.rs:88:41:
called `Option::unwrap()` on a `None` value
stack backtrace:
   0: rust_begin_unwind
   1: core::panicking::panic_fmt
   2: core::panicking::panic
   3: core::option::unwrap_failed
   4: api::handlers::upload::handle_upload::{{closure}}
             at ./src/handlers/upload.rs:88:41
   5: <core::pin::Pin<P> as core::future::future::Future>::poll
   6: tokio::runtime::task::core::Core<T,S>::poll
note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.

line 88 is `let name = field.file_name().unwrap().to_string();` — it only happens with some clients,
most uploads work. Why would file_name be None and what should I do instead of unwrap?""",
    """Hi, my colleague left and I inherited his Python service. Every few hours it stops responding and
the log shows this over and over:

  File "/srv/app/worker.py", line 212, in poll
    msg = self.queue.get(timeout=5)
  File "/usr/lib/python3.10/queue.py", line 179, in get
    raise Empty
_queue.Empty

  File "/srv/app/worker.py", line 230, in poll
    self.handle(msg)
  File "/srv/app/worker.py", line 97, in handle
    with self.lock:
KeyboardInterrupt

The process isn't dead, CPU is at 0%, and it only recovers when we restart it. The worker uses
threading with one lock shared by the poller and a heartbeat thread. What could make it hang like this?""",
)
add("math", "",
    """Our class got this problem and we disagree about the answer. A shop raises the price of a jacket
by 20%, then a month later puts it on sale at 20% off the new price. Half of us say the final price is
the same as the original, the other half say it's lower. Then the second part: if instead the shop
wanted the sale price to equal the original price exactly, what discount percentage would it need?
Please explain it with actual numbers (say the jacket cost 100 at first) and then with algebra.""",
)
add("writing", "",
    """This is the draft of the email I want to send to all parents in my daughter's class. Could you make
it clearer and friendlier, and shorter if possible?

Dear parents, as some of you know the class trip to the science museum is on the 14th and we still need
volunteers, at the moment we only have two and we need at least five because of the ratio rules. Also
the payment of 12 euros should be made by the 7th, some people have not paid yet, and please remember
the children need a packed lunch and no nuts because of allergies in the class. If you can volunteer
please reply to this email or tell me at pickup. Thanks, Maria (class rep)""",
    """I'm writing a fantasy novel and I need a scene. Background: Elin is a young cartographer who has
discovered that the royal maps were deliberately falsified to hide a valley. She's just been summoned by
the queen's advisor, Maren, an old friend of her late mother, who she suspects knows the truth. The
scene takes place in a cold library at night. I want tension, a conversation where neither says
directly what they know, and an ending where Maren leaves something on the table for Elin to find.
About 600 words, past tense, third person close to Elin.""",
)
add("summarisation", "",
    """Paste below is the transcript of our 45-minute product call. Could you summarise it into decisions,
open questions, and action items with owners?

Tom: So the main thing is the onboarding drop-off. 40% leave at the workspace step.
Sara: We think it's the invite screen, people don't have colleagues' emails ready.
Tom: Can we make it skippable?
Dev: Yes, it's a day of work. But analytics needs a new event.
Sara: I'll write the spec for the skip button today.
Tom: And pricing page, where are we?
Lea: Copy is done, design review Thursday. Legal still hasn't approved the refund wording.
Tom: I'll chase legal. Let's aim to ship both next sprint. Anything else?
Dev: Mobile crash rate went up after 3.2, we're on it, fix by Friday.""",
    """I'm pasting a long comment from our community forum. What's the user actually asking for, in a
sentence or two?

"I've been using this app since 2019, back when it was just a simple notes tool. Honestly I loved it.
Over the years you've added boards, then AI, then a calendar, then chat, and now the sidebar has eleven
icons and it takes four clicks to create a note. I get that you need to make money, I pay for the
yearly plan and I'm happy to. But I open this app 30 times a day to write down one line, and the new
home screen loads a dashboard I never look at. Please, please give us a setting to open straight into a
blank note, like the old days. That's it. That's the post.\"""",
)
add("translation", "",
    """Could you translate this message from my son's German host family into English? I want to make sure
I understand everything about the pickup.

Liebe Familie Carter, wir freuen uns sehr auf Jamie! Wir holen ihn am Samstag um 14:30 Uhr am
Hauptbahnhof in Freiburg ab, am Ausgang zur Bismarckallee. Bitte sagen Sie ihm, er soll uns anrufen,
falls der Zug Verspätung hat. Unsere Tochter Lena hat ein Schild mit seinem Namen gemacht. Er hat ein
eigenes Zimmer, und am Sonntag machen wir einen Ausflug in den Schwarzwald, also braucht er gute Schuhe
und eine Regenjacke. Herzliche Grüße, Familie Brandt""",
)
add("billing_support", "",
    """Order confirmation: Pro plan (yearly) - 144.00
Tax (20%) - 28.80
Total charged - 172.80
Payment method: Visa ending 4411
Date: 12 January

Then this arrived on 12 February:
Pro plan (monthly) - 15.00
Tax (20%) - 3.00
Total charged - 18.00

Why am I being charged monthly when I already paid for the whole year? Please refund the February charge
and make sure I'm not billed again until next January.""",
)
add("sensitive_medical", "",
    """My GP letter says: 'Ultrasound shows a 2.1 cm simple cyst in the left ovary. No solid components.
No free fluid. Recommend follow-up ultrasound in 6-8 weeks.' I'm 29 and I've had some pain on the left
side during my period for a few months, and once it was so bad I had to leave work. Nobody explained
anything at the appointment. What does this mean, is it dangerous, and is there anything I should watch
out for before the follow-up scan? When would the pain be a reason to go to A&E?""",
)
add("chitchat", "",
    """Haha okay so I just told my coworkers that I've been chatting with you during lunch breaks and now
they think I'm weird. One of them asked if you have feelings and I said I don't know, I'd ask. So: do
you have feelings? Do you get bored when people ask you the same thing a hundred times? And what's the
strangest thing someone has asked you? You don't have to answer all of them, I'm just curious and a bit
bored, lunch isn't over for another twenty minutes.""",
)
add("data_analysis", "",
    """Table: support_tickets
id | created_at | closed_at | priority | team | satisfaction
1 | 2024-01-02 09:12 | 2024-01-02 15:40 | high | billing | 4
2 | 2024-01-02 10:03 | 2024-01-05 11:00 | low | tech | 2
3 | 2024-01-03 08:55 | 2024-01-03 09:30 | high | tech | 5
...about 40,000 rows

I need a SQL query (Postgres) that shows, per team and per month, the median resolution time in hours,
the share of tickets closed within 24 hours, and the average satisfaction, only for tickets that are
closed. Then tell me how you'd chart the trend.""",
    """Here are our quarterly numbers from the last two years:

Q1-22 revenue 410k, marketing spend 62k
Q2-22 revenue 455k, marketing spend 70k
Q3-22 revenue 430k, marketing spend 58k
Q4-22 revenue 520k, marketing spend 95k
Q1-23 revenue 470k, marketing spend 66k
Q2-23 revenue 505k, marketing spend 81k
Q3-23 revenue 490k, marketing spend 64k
Q4-23 revenue 610k, marketing spend 110k

My CEO wants to know how much revenue each extra 1k of marketing brings in. Can you run a regression,
tell me how reliable it is with 8 points, and point out the seasonality problem?""",
)
add("legal", "",
    """My tenancy agreement has this clause and my landlord is now using it to charge me:

"The Tenant shall be responsible for all repairs to the Property, including but not limited to
plumbing, heating, electrical installations and the structure of the building, regardless of the cause
of the damage."

The boiler broke last week and he says I have to pay the 2,300 repair bill because of this clause. I
rent a flat in England, assured shorthold tenancy, and I've lived here two years. Is this clause even
valid? I thought the landlord had to fix the boiler.""",
    """We received this email from a company we've never heard of:

"It has come to our attention that your website uses a photograph (attached) that is owned by our
client. Unauthorised use constitutes copyright infringement. To settle this matter without litigation,
please remit 1,450 EUR within 14 days."

The photo was on our blog from 2018, a designer found it online and we don't know where. We've removed
it already. Do we have to pay, is the amount reasonable, and should we reply ourselves or get a
lawyer?""",
)
add(None, "hard",
    """Below is the menu of the restaurant where we're having my mum's 70th birthday dinner:

Starters: burrata with roasted peppers; beef carpaccio; mushroom soup.
Mains: sea bass with fennel; slow-cooked lamb shoulder; risotto with asparagus; ribeye steak.
Desserts: tiramisu; lemon tart; cheese plate.

We'll be eight people and I'm in charge of ordering the wine. Most of us drink red, two prefer white,
and my uncle only drinks sparkling. Budget about 40 per bottle. What should I order, and how many
bottles for a three-hour dinner?""",
    """Here's the invoice from the plumber who replaced our water heater:

Labour 4 h x 65 = 260
Water heater, 80 L = 540
Valves and fittings = 85
Call-out fee = 50
VAT 20% = 187
Total = 1,122

Is this a fair price for a water heater replacement, and how long should a water heater like this
normally last? The old one was only eight years old, which seemed short to me.""",
)
