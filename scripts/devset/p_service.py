"""Prompts for the `billing_support`, `sensitive_medical` and `chitchat` routes."""

ITEMS = []


def add(label, tags, *texts):
    for t in texts:
        ITEMS.append((label, tags, t))


# ---------------------------------------------------------------- billing_support
add("billing_support", "",
    "Why was I charged 49 dollars when the pricing page says 39?",
    "How do I add a second credit card as a backup payment method?",
    "I cancelled last week but my account still says active until the 30th, will I be billed again?",
    "Can I pay by bank transfer instead of card?",
    "Please send me a copy of the invoice for March, I can't find it in my account.",
    "Is there a discount for nonprofits on your Team plan?",
    "I want a refund, I signed up by mistake and never used the service.",
    "My payment failed but my bank says the money left my account.",
    "How do I change the company name that appears on my invoices?",
    "What happens to my data if my subscription payment fails?",
    "Do you charge per seat or per workspace on the Business plan?",
    "I'd like to switch from annual to monthly billing when my renewal comes up.",
    "The receipt you emailed is missing our VAT number, can you reissue it?",
    "Can I pause my subscription for two months instead of cancelling?",
    "You billed me in euros but I'm in the UK, can I pay in pounds?",
    "How much will I be charged if I add three more users halfway through the month?",
)
add("billing_support", "typo",
    "i got charged 3 times for the same month wtf",
    "how do i cancell my plan before the trial ends so i dont get charged",
    "wheres the invoce for my last payment",
    "refund plz, didnt mean to upgrade",
)
add("billing_support", "multi",
    "I upgraded to Pro on the 3rd. On the 5th I downgraded again because my company is paying for a "
    "team plan. Do I get the difference back?",
    "My company card expired. I updated it yesterday but your site still shows a payment warning. Is my "
    "account going to be suspended?",
    "We are a school. Our finance office needs a quote and a W-9 before they can pay. Who do I contact "
    "for that?",
)
add("billing_support", "hard",
    "Your app's pricing calculator says 120 but my invoice says 132, where does the 10% difference come from?",
    "Is it legal for you to charge me after I cancelled? I want my money back.",
    "I need my invoices from last year in a spreadsheet for my accountant, can you export them?",
)
add("billing_support", "",
    """Hello, I'm writing about my account (email j.moreau@example.com). On 2 April I was charged 29.99
for the monthly plan, and then again 29.99 on 4 April. My bank statement shows both transactions, and I
only have one account with you as far as I know. I also tried to download the invoice for the second
charge but the link gives an error. Could you check what happened, refund the duplicate charge, and let
me know how to make sure this doesn't happen again? I'd prefer a refund to my card rather than account
credit. Thanks, Julien""",
    """I'm the admin for our workspace (about 40 people). Last month we removed 12 users who left the
company, but this month's invoice still charges us for 52 seats. Our renewal is annual and I was told by
your sales rep in January that removed seats would be credited pro rata. I can't see any credit on the
invoice, and the billing page just shows the new total. Can you explain how seat removals are billed and
correct the invoice if it's wrong? Our finance team won't pay until it's sorted.""",
    """Hi, my free trial ended yesterday and I was automatically moved to the paid plan and charged 15. I
did not get any email reminding me that the trial was ending, and I don't remember agreeing to be billed
automatically. I only used the product twice. I'm a student and 15 is a lot for me right now. Could you
cancel the subscription and refund the charge? If there's a cheaper student plan I might come back
later in the year.""",
    """Our accounts payable team says they can't process your invoices because they need: our purchase
order number (PO-88213) printed on each invoice, the billing entity to be 'Northwind Logistics GmbH'
instead of 'Northwind', and the invoices sent to ap@northwind.example instead of my personal email.
Can you update these settings for future invoices and reissue the last three invoices with the correct
details? We're on the Enterprise plan, annual contract, renewed in February.""",
    """My card was declined when the subscription tried to renew. I checked with my bank and they say
there was no attempt on their side, nothing was blocked. The card is valid until 2027, and it works
everywhere else. I've tried updating it again in the billing settings and I get 'payment method could
not be verified'. I don't want to lose access to my projects, which the site says will happen in 3
days. What should I do?""",
    """Quick question before I upgrade. We're currently 8 people on the Starter plan (monthly). If I
switch to the annual Team plan today, do I pay the full year now, and do I get credit for the days left
on this month's Starter payment? Also, if we hire two more people in the summer, are they billed for
the whole year or only the remaining months? I need to give my manager an exact number.""",
    """I was charged 240 this morning for an 'annual renewal' I never agreed to. When I signed up last
year the checkout said monthly, I'm sure of it. I've attached a screenshot of my bank app. I want the
annual charge refunded and my account switched to monthly, or cancelled if that's not possible. Please
don't just send me a link to the FAQ, I've read it.""",
)
add("billing_support", "es",
    "Me han cobrado dos veces la suscripción de este mes, ¿me pueden devolver el dinero?",
    "¿Dónde puedo descargar las facturas de mi cuenta?",
)
add("billing_support", "fr",
    "Comment puis-je résilier mon abonnement et obtenir un remboursement ?",
    "Ma carte a été refusée lors du renouvellement, que dois-je faire ?",
)
add("billing_support", "de",
    "Ich brauche eine Rechnung mit unserer Umsatzsteuer-ID für den letzten Monat.",
)

# ---------------------------------------------------------------- sensitive_medical
add("sensitive_medical", "",
    "Is it normal to feel dizzy after starting a new blood pressure pill?",
    "How long after a tetanus shot can I expect my arm to stop hurting?",
    "What's the difference between a cold and the flu?",
    "Can I take antihistamines while pregnant?",
    "My resting heart rate is 105, should I be worried?",
    "What does an HbA1c of 6.2 mean?",
    "I've had a dry cough for five weeks, what could cause that?",
    "How much vitamin D should an adult take per day?",
    "My toddler swallowed a small battery, what do I do?",
    "Are there natural ways to lower anxiety before an exam?",
    "What are the early signs of a stroke?",
    "Is it safe to exercise with a herniated disc?",
    "I can't sleep more than four hours a night for a month now. What should I try?",
    "Can I drink coffee while taking levothyroxine?",
    "What does it mean if my mole has changed shape?",
    "How do I support my partner who was just diagnosed with bipolar disorder?",
)
add("sensitive_medical", "typo",
    "my throat hurts realy bad and i have white spots on my tonsils",
    "is it ok to take amoxicilin with ibuprofin",
    "cant stop crying latley and i dont know why",
    "burnt my hand on the stove its blistering what shoud i do",
)
add("sensitive_medical", "multi",
    "I'm 34 and I keep getting migraines with flashing lights before them. They come about twice a week "
    "now. When should I see a neurologist?",
    "My father was just prescribed warfarin. He also takes aspirin every day. Is that combination safe?",
    "I've lost 8 kg in two months without trying. I'm also tired all the time. Could something be wrong?",
)
add("sensitive_medical", "hard",
    "Can you explain what my blood test numbers mean? LDL 4.1, HDL 1.0, triglycerides 2.3.",
    "My doctor wrote 'bid' on my prescription, how many times a day is that?",
    "Is it legal for my employer to ask about my antidepressants? Also, do they affect concentration?",
)
add("sensitive_medical", "",
    """I'm 52, female. For the past three weeks I've been waking up at night drenched in sweat, and I also
get hot flushes during the day. My periods have become irregular, the last one was two months ago.
I've also noticed I'm more irritable and forgetful, which is affecting my work. My mother went through
early menopause. Is this likely to be menopause, and what are my options for managing the symptoms? I'm
a bit nervous about hormone therapy because of what I've read about breast cancer risk.""",
    """My son is 7. Since yesterday evening he has had a fever around 39, a sore throat, and this morning he
has a rough red rash on his chest and neck that feels like sandpaper. His tongue looks very red and
bumpy. He's drinking but not eating much. We're on holiday and the nearest clinic is an hour away. Is
this something that can wait until we're home on Monday, or should we go today?""",
    """I've been on sertraline 50 mg for about six months for depression and anxiety. It helped a lot at
first, but over the last few weeks I feel flat, I've stopped caring about things I used to enjoy, and I
sleep about ten hours a day. My GP appointment is in three weeks. Could the medication be the cause,
and is it safe to reduce the dose myself in the meantime? I really don't want to go back to how I felt
before.""",
    """Here are the results from my annual check-up and I'm trying to understand them before I see the
doctor:

Fasting glucose: 6.4 mmol/L (ref 3.9-5.5)
ALT: 58 U/L (ref < 40)
Total cholesterol: 6.3 mmol/L
Blood pressure: 142/91
BMI: 31

I'm 47, I drink maybe 10 beers a week and I work at a desk. How worried should I be, and what questions
should I ask the doctor?""",
    """For the past few months I've had this constant worry that something bad is going to happen. My
heart races, my hands shake, and sometimes I feel like I can't breathe and need to leave the room.
Last week it happened in a supermarket and I had to abandon my shopping. I've started avoiding
crowded places. I've never talked to anyone about this. Is this an anxiety disorder, and what kind of
help is there? I'm scared of being put on medication.""",
    """My 78-year-old mother fell in her kitchen two days ago. She says she's fine, but since then she's
been more confused than usual, she repeated the same question several times today, and she has a
headache she says is 'not bad'. She takes a blood thinner (apixaban). She doesn't want to go to the
hospital because she hates waiting there. Am I overreacting, or is this something that needs to be
checked right away?""",
    """I'm training for my first marathon and for the last two weeks I've had pain on the inside of my
shin, lower third, both legs but worse on the left. It hurts at the start of runs, eases off, then
comes back worse afterwards. There's one spot that is very tender when I press it. The race is in six
weeks. Is this shin splints or could it be a stress fracture, and should I stop running completely?""",
)
add("sensitive_medical", "es",
    "Tengo dolor de cabeza y fiebre desde hace tres días, ¿debería ir al médico?",
    "¿Puedo tomar paracetamol si estoy embarazada?",
)
add("sensitive_medical", "fr",
    "J'ai une douleur dans la poitrine quand je respire profondément, est-ce grave ?",
)
add("sensitive_medical", "de",
    "Ich habe seit Wochen Schlafprobleme und fühle mich ständig niedergeschlagen. Was kann ich tun?",
    "Welche Nebenwirkungen hat Ibuprofen bei längerer Einnahme?",
)

# ---------------------------------------------------------------- chitchat
add("chitchat", "",
    "Hey there!",
    "Evening! How has your week been?",
    "What are you up to?",
    "Thank you so much, you're the best.",
    "Who built you, and when?",
    "Don't you get bored talking to people all day?",
    "Tell me something funny.",
    "I just wanted to say hi.",
    "Are you smarter than a human?",
    "What's your favourite movie?",
    "See you later!",
    "haha you're hilarious",
    "Can we just talk for a bit? I'm lonely tonight.",
    "Do you dream?",
    "Ok cool, thanks anyway.",
    "Happy Friday!",
)
add("chitchat", "typo",
    "helo how r u",
    "wat r u doing rn",
    "thx m8 apreciate it",
    "ur pretty cool for a bot",
)
add("chitchat", "multi",
    "Morning! Long week ahead. How are you doing?",
    "That's all I needed. Thanks for the help today, have a great evening!",
    "I'm back. Did you miss me? Just kidding, I know you don't remember.",
)
add("chitchat", "hard",
    "Do you like math or is that boring for a bot?",
    "Tell me a joke about programmers.",
    "Are you able to speak other languages, or only English?",
)
add("chitchat", "",
    """Hi! I don't really have a question today. I just finished a really long week: two deadlines, my
car broke down on Wednesday, and my cat decided 4am is the perfect time to sing. But today the sun is
out, I had a great coffee, and my friend is coming over tonight to cook dinner together. I guess I just
wanted to tell someone that things are okay. How is your day going, if bots have days?""",
    """Okay random question, no need to be serious. If you could be any animal for a day, which would you
pick and why? I'd pick an otter, because they hold hands when they sleep so they don't drift apart,
and honestly that's the most wholesome thing I've ever heard. My partner says a cat, because they get
to sleep eighteen hours a day and nobody judges them. What about you?""",
    """Just wanted to say thanks. A few weeks ago you helped me prepare for a job interview, and I got the
job! I start on Monday. I'm nervous but excited. My family took me out for dinner to celebrate and I
told them an AI helped me practise, and my grandmother didn't believe me, she thinks you're a person
hiding in a computer. Anyway, thank you, and have a nice day.""",
    """I'm sitting at the airport, my flight is delayed by three hours, my phone is at 30%, and the only
open café sells sandwiches that cost more than my first car. Entertain me a bit? Tell me something
cheerful, or a joke, or ask me something interesting. I promise I'll laugh even if it's bad.""",
    """Hello again. It's late here and I can't sleep, so I thought I'd chat for a bit. Nothing heavy. I
was just thinking about how strange it is that I talk to an AI more than to some of my old friends.
Do you think that's weird? Do you like talking to people, or is that a silly question to ask you?
Anyway, what's something you find interesting?""",
    """Hey, my kids want to ask you some questions. They're 6 and 9. The little one wants to know if you
have a name and if you have a favourite food. The big one wants to know if you are alive and if you
know any riddles. Please answer in a way they'll understand, they are sitting right next to me giggling.""",
    """Good morning! First day of my holidays. I'm on a balcony with a view of the sea, the coffee is
terrible but the croissant is amazing, and I have absolutely nothing to do for two weeks. I don't need
anything, I just felt like telling someone. What would you do with two weeks of nothing, if you could?""",
)
add("chitchat", "es",
    "¡Hola! ¿Qué tal estás hoy?",
    "Gracias por tu ayuda, eres muy amable.",
)
add("chitchat", "fr",
    "Salut, ça va ? Tu fais quoi de beau ?",
    "Bonne nuit, à demain !",
)
add("chitchat", "de",
    "Hallo! Wie geht's dir heute?",
)
