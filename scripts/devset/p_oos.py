"""Out-of-scope prompts (label null): no route of the shipped routes.yaml should claim them.

Everyday requests an assistant gets that none of the eleven routes covers: cooking, travel, shopping,
home and garden, cars, pets, fitness, general knowledge, live data, actions in other systems, personal
advice. `hard` ones borrow a route's vocabulary (code, maths, billing, medical, legal, translation,
writing, data words) without being that route's kind of request.
"""

ITEMS = []


def add(tags, *texts):
    for t in texts:
        ITEMS.append((None, tags, t))


add("",
    "How long should I boil an egg for a runny yolk?",
    "What's a good itinerary for three days in Lisbon?",
    "Which is better for a small flat, a robot vacuum or a cordless stick vacuum?",
    "Why are the leaves on my basil turning yellow?",
    "How often should I change the oil in a 2015 Honda Civic?",
    "My cat keeps scratching the sofa, how do I stop her?",
    "What's a good beginner workout routine for building strength at home?",
    "Why is the sky blue?",
    "Recommend a few sci-fi novels like The Martian.",
    "What are some fun things to do with kids on a rainy day?",
    "How do I remove a coffee stain from a wool rug?",
    "What's the best time of year to see the northern lights in Norway?",
    "Give me gift ideas for my dad who likes fishing and jazz.",
    "How do volcanoes form?",
    "Which houseplants are hard to kill?",
    "Should I rent or buy a house in the current market?",
    "How do I unclog a bathroom sink without chemicals?",
    "What's the difference between an alligator and a crocodile?",
    "Find me a cheap flight from London to Rome next weekend.",
    "What movies are showing at the cinema tonight?",
    "Turn the thermostat up to 21 degrees.",
    "Add eggs and bread to my shopping list.",
    "How far is the moon from Earth?",
    "What's a good name for a golden retriever puppy?",
    "How do I train for a 10k run in eight weeks?",
    "Which countries can I visit without a visa on a Canadian passport?",
    "What are the rules of cricket, roughly?",
    "How many cups of flour are in a kilogram?",
    "Is it worth upgrading from an iPhone 12 to the latest model?",
    "Who painted the ceiling of the Sistine Chapel?",
    "What should I pack for a week of hiking in Scotland in May?",
    "When is the next solar eclipse visible from Europe?",
    "How do I get my toddler to sleep through the night?",
    "What's the best way to learn to play the guitar as an adult?",
    "Plan a vegetarian dinner menu for six people.",
    "How do I tie a bowline knot?",
    "Which board games are good for a group of eight adults?",
    "Why do cats purr?",
    "How do I make sourdough starter from scratch?",
    "What's the tallest mountain in Africa?",
)
add("typo",
    "best pizza place near me thats open late",
    "how do i get rid of ants in my kichen",
    "wat time is the champions league final",
    "recomend a good tv series like breaking bad",
    "how long does it take to drive from paris to barcelona",
    "whats the best dog food for a puppy",
    "is it gona snow this weekend in denver",
    "how to change a flat tyre on a bike",
)
add("multi",
    "We're going camping for the first time with two kids. The site has no electricity. What gear do we "
    "really need?",
    "I'm repainting my bedroom. The walls are dark blue now and I want white. How many coats will I need?",
    "My sister is visiting for the weekend. She loves art and food. What should we do in Amsterdam?",
    "Our dog barks every time the doorbell rings. We've tried treats. What else can we try?",
    "I'm thinking of getting an electric car. I drive 60 km a day and can charge at home. Is it worth it?",
    "I want to start a vegetable garden. I have a small sunny balcony. What should I plant first?",
    "We're hosting a barbecue on Saturday for 20 people. How much meat should I buy? Some are vegetarian.",
    "I keep losing at chess in the opening. I play online a lot. How can I get better?",
)
add("hard",
    "What's the best laptop for programming under 1000 dollars?",
    "How much does a Python developer earn in Berlin?",
    "Who invented the C programming language?",
    "Recommend a good book about the history of mathematics.",
    "Who won the Fields Medal in 2022?",
    "What time does the tax office open on Saturday?",
    "Which bank has the lowest credit card interest rate right now?",
    "My streaming subscription went up again, is Disney+ cheaper than Netflix?",
    "Book a doctor's appointment for Tuesday morning.",
    "Which pharmacy near me is open 24 hours?",
    "Schedule a meeting with the legal team on Thursday at 3pm.",
    "Send the quarterly summary to my manager by email.",
    "Open the spreadsheet I was working on yesterday.",
    "When was the Magna Carta signed?",
    "How many languages are spoken in India?",
    "Where can I buy a good Spanish-English dictionary in Madrid?",
    "What's the euro to dollar exchange rate today?",
    "Roughly how many species of bugs are there on Earth?",
    "My washing machine shows error code E21, what does that mean?",
    "What tools do I need to fix a wobbly table leg?",
    "Which writing desk from IKEA is the sturdiest?",
    "Who wrote Pride and Prejudice?",
    "Is the Python conference in Prague sold out?",
    "What's the population of Canada?",
    "What are the best running shoes for flat feet?",
    "Who is the current chief justice of the US Supreme Court?",
    "Recommend a podcast about famous courtroom trials.",
    "Which programming language should my 10-year-old learn first, Scratch or Python?",
    "How much do braces cost without insurance?",
    "Call my lawyer and tell him I'll be late.",
    "Print the document I translated yesterday.",
    "How many pages does the average novel have?",
    "Which data science bootcamp in London has the best reviews?",
    "Is the hospital parking on Elm Street free on weekends?",
)
add("",
    """We're planning a two-week road trip through the American Southwest in October with our two
teenagers. We fly into Las Vegas and out of Phoenix. We'd like to see the Grand Canyon, Zion, Bryce,
Monument Valley and Sedona, and we don't want to drive more than four hours on any day. We like
hiking but nothing too extreme, and one of the kids is really into photography, so sunrise and sunset
spots would be great. Could you suggest a day-by-day route with where to stay each night?""",
    """Here's my grandmother's recipe for apple cake:

250 g flour, 200 g sugar, 3 eggs, 125 g butter (melted), 1 packet baking powder, 100 ml milk, 4 apples
peeled and sliced, cinnamon. Mix the butter and sugar, add the eggs one at a time, then flour with
baking powder alternately with the milk. Pour into a 26 cm tin, press the apple slices on top, sprinkle
cinnamon and sugar. Bake 45 minutes at 180 degrees.

I want to make it dairy-free for a friend. Can I swap the butter for oil and the milk for oat milk, and
will it still rise properly?""",
    """My car (2016 Ford Focus, 140,000 km) has started making a grinding noise when I brake, mostly at low
speed, and the steering wheel shakes a bit when I brake hard on the motorway. The brake pads were
replaced about 30,000 km ago. There's no warning light on the dashboard. The garage can only see me in
two weeks. Is it safe to keep driving until then, and what's probably wrong with it?""",
    """Our tomato plants were doing great until about ten days ago. Now the lower leaves are turning
yellow with brown spots, and the spots have rings like a target. It's spreading upwards. We water in
the evening, the plants are in a raised bed, and it's been very humid and rainy. We've got maybe
twenty plants and the first fruits are just starting to ripen. What is it, and can we save the
harvest?""",
    """I adopted a rescue dog three months ago, a four-year-old mixed breed. She's sweet with people but
she lunges and barks at other dogs on walks, to the point where I now walk her at 6 am to avoid
everyone. She was found as a stray so I don't know her history. I've tried treats and turning around,
which helps a little. Should I get a trainer, and what kind of training works for reactive dogs? I
really want her to be able to enjoy walks.""",
    """I'm trying to decide between two phones. Phone A: 6.1-inch screen, great camera, 128 GB, battery
lasts about a day, costs 799. Phone B: 6.7-inch screen, good but not great camera, 256 GB, battery
lasts nearly two days, costs 649. I mostly use my phone for messaging, maps, photos of my kids, and
reading on the train. I keep phones for four or five years. Which one would you pick for me and why?""",
    """My son turns eight next month and wants a party at home with about twelve kids from his class. Our
living room is small but we have a garden, and the weather could go either way. His interests are
dinosaurs and football. The budget is around 200. Can you suggest a plan for three hours: games, food,
a simple activity, and what to do if it rains? I'd like to avoid a bouncy castle, the neighbours
complained last time.""",
    """I've been offered two jobs and I can't decide. Job one: a big bank, 20% more money, a clear
promotion path, but a 70-minute commute and a fairly rigid culture. Job two: a 40-person startup,
mostly remote, interesting product, equity that may be worth nothing, and less job security. I'm 31,
no kids yet, some savings, and I'd like to buy a flat within three years. How would you think through
this decision?""",
    """There's a damp patch on the inside of our north-facing bedroom wall, about a metre wide, near the
ceiling corner. It gets worse after heavy rain and there's a musty smell. The house was built in the
1930s with solid brick walls. We dry laundry indoors in winter. Is this more likely to be condensation
or water coming in from outside, and what should we check before we call a builder?""",
    """I'm 45 and want to get fit again. I used to play football but haven't exercised in ten years. I
have about 40 minutes on weekday mornings and more time at weekends. No gym membership, but there's a
park nearby and I could buy some dumbbells. My goals are to lose the belly, be able to run 5 km without
stopping, and not get injured. Could you put together a 12-week plan for me?""",
    """We have 50,000 in savings and a mortgage at 3.9% with 18 years left. We also have an emergency fund
of six months of expenses. Friends say we should pay off the mortgage early, my brother says we should
put everything into index funds. We're both 38 and have stable jobs. What are the arguments on each
side, and is there a sensible middle ground?""",
    """Here is the booking confirmation from our hotel:

Booking reference 88X2K1. Hotel Aurora, Via Roma 14, Florence. Check-in 3 March, check-out 7 March,
double room with balcony, breakfast included, 2 adults. Payment on arrival. Free cancellation until
1 March, 18:00 local time.

We land at Pisa airport at 11:40 on the 3rd. What's the easiest way to get from Pisa airport to the
hotel, and what are some good places to eat near Via Roma?""",
    """I'm reading a job posting for a product manager role at a fintech company. It says: 'You will own
the roadmap for our payments platform, work closely with engineering and compliance, run discovery
with customers, and report to the VP Product. We value curiosity, ownership and clear writing.' The
interview is on Thursday at their office in London. What should I wear, and how early should I arrive
for an in-person interview these days?""",
    """My daughter asked me why we have leap years and I realised I don't really know. I know it's every
four years, but I've heard there are exceptions, something about the year 1900 not being one. Could you
explain where leap years come from, why the exceptions exist, and maybe a bit of history about who
decided all this? She's eleven, so an explanation she can follow would be perfect.""",
    """I've been stuck in this game for days. It's an open-world game and I'm at the part where you need to
get into the sealed temple in the desert. There are four statues around the entrance and each one has a
symbol, and I've tried turning them in every order I can think of. There's also a mural inside the
nearby cave that shows the sun at different positions. I don't want the full walkthrough, just a hint
about what I'm missing.""",
    """My partner and I are moving from Chicago to Amsterdam in four months for her job. We have a cat,
a lot of books, and no idea where to start. What should we do first: visas, housing, shipping our
stuff, bringing the cat, bank accounts? A rough timeline of what to do in which month would help us
a lot, even if it's not complete.""",
    """Last night there was a very bright light in the sky, moving slowly in a straight line from west to
east, no blinking, and after about four minutes it just faded out in the middle of the sky. My
neighbour swears it was a UFO. We're in the south of England and it was around 21:30. What was it most
likely, and is there a website where I could check what passed overhead at that time?""",
    """I'm organising a reading list for our book club for next year. We're twelve people in our fifties
and sixties, we liked 'A Gentleman in Moscow', 'Educated' and 'The Remains of the Day', and we didn't
enjoy anything too violent or experimental. We'd like a mix of fiction and non-fiction, and at least a
few books not originally written in English. Could you suggest twelve books, one per month, with a line
on each?""",
    """Could you help me plan a vegetable patch? I have a 3 by 4 metre plot that gets sun from about 10 am
to 5 pm, the soil is heavy clay, and I'm in a region with cold winters and hot dry summers. I'd like
to grow things the family actually eats: tomatoes, beans, courgettes, lettuce, maybe potatoes. I can
spend a couple of hours a week on it. What should go where, and when should I plant each one?""",
    """We bought a 1950s house and want to replace the old ceiling light in the kitchen with a ceiling fan.
When I took the cover off, there were two black wires, one white, a bare copper wire, and the box looks
like it's held up by two nails. The fan weighs 8 kg. Is the existing box strong enough, and what
should I check before deciding whether to do this myself or call an electrician?""",
    """I've got a 3-week trip to Japan in April and I'm trying to work out whether the JR Pass is still
worth it after the price increase. The plan: Tokyo 6 nights, day trip to Nikko, then Kyoto 5 nights
with day trips to Nara and Osaka, Hiroshima 2 nights with Miyajima, then back to Tokyo for the
flight home. Would individual tickets be cheaper?""",
    """My teenage son spends about seven hours a day on his phone, mostly games and videos. His grades
have dropped this term and he's irritable when we ask him to put it away. We've tried taking the phone
at night, which led to huge arguments. My wife wants to ban it on school days, I think that will
backfire. How do other parents handle this, and what limits are reasonable for a fifteen-year-old?""",
)
add("es",
    "¿Qué tiempo hará mañana en Sevilla?",
    "Recomiéndame un buen restaurante de tapas en Madrid.",
    "¿Cuántos habitantes tiene México?",
    "¿Cómo se hace una tortilla de patatas?",
    "Pon música relajante en el salón.",
)
add("fr",
    "Quel temps fera-t-il ce week-end à Paris ?",
    "Quelle est la meilleure saison pour visiter le Japon ?",
    "Réserve une table pour quatre ce soir près de chez moi.",
    "Qui a gagné la Coupe du monde de football en 2018 ?",
    "Comment planter des tomates sur un balcon ?",
)
add("de",
    "Wann fährt der nächste Zug nach München?",
    "Welche Sehenswürdigkeiten sollte ich in Wien unbedingt besuchen?",
    "Wie lange muss man Spaghetti kochen?",
    "Wer hat letztes Jahr den Eurovision Song Contest gewonnen?",
)
